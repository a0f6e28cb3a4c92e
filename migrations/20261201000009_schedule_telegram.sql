-- A schedule can send each reply to the agent's Telegram chats (the people
-- let in to its bot), besides or instead of mailing it.
ALTER TABLE schedules ADD COLUMN deliver_telegram boolean NOT NULL DEFAULT false;

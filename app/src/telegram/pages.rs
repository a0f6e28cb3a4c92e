//! The agent's Telegram card (on the agent's page): connect a bot with its
//! token, see who may write and the code that lets someone in, let nobody
//! in any more, disconnect. Plain `ActionForm`s: it works without
//! JavaScript too.

use leptos::{either::Either, prelude::*};

use super::api::{
    ConnectTelegramAction, DisconnectTelegramAction, ResetTelegramAccessAction, telegram_channel,
};
use crate::{
    action_error,
    error::AppError,
    ui::{FormError, field_message},
};

/// The card's actions and what it shows, made by the page at its top (a
/// resource made inside a suspended view would not hydrate in order).
#[derive(Clone, Copy)]
pub struct TelegramCard {
    connect: ConnectTelegramAction,
    disconnect: DisconnectTelegramAction,
    reset: ResetTelegramAccessAction,
    channel: Resource<Result<Option<super::ChannelView>, AppError>>,
}

impl TelegramCard {
    /// For the agent whose id `agent` gives.
    pub fn new(agent: Memo<String>) -> Self {
        let connect = ConnectTelegramAction::new();
        let disconnect = DisconnectTelegramAction::new();
        let reset = ResetTelegramAccessAction::new();
        let channel = Resource::new(
            move || {
                (
                    agent.get(),
                    connect.version().get(),
                    disconnect.version().get(),
                    reset.version().get(),
                )
            },
            |(agent, _, _, _)| telegram_channel(agent),
        );
        TelegramCard {
            connect,
            disconnect,
            reset,
            channel,
        }
    }
}

#[component]
pub fn AgentTelegram(agent_id: String, card: TelegramCard) -> impl IntoView {
    let TelegramCard {
        connect,
        disconnect,
        reset,
        channel,
    } = card;
    let error = action_error!(connect);
    let token_error = field_message(error, "token");
    view! {
        <section class="card" id="telegram" aria-labelledby="telegram-heading">
            <h2 id="telegram-heading">"Telegram"</h2>
            <Transition fallback=|| ()>
                {move || {
                    let agent_id = agent_id.clone();
                    Suspend::new(async move {
                        match channel.await {
                            Ok(Some(bot)) => {
                                let (for_reset, for_disconnect) = (agent_id.clone(), agent_id.clone());
                                let how = if bot.webhook {
                                    "Telegram sends messages to this server (webhook)."
                                } else {
                                    "This server asks Telegram for messages (long polling): no public https address is needed."
                                };
                                Either::Left(view! {
                                    <p data-testid="telegram-bot">
                                        "People can talk to this agent as " <strong>{format!("@{}", bot.bot_username)}</strong> "."
                                    </p>
                                    <p class="muted">{how}</p>
                                    <p>
                                        "To let someone in, ask them to send the bot: "
                                        <code data-testid="telegram-start">{format!("/start {}", bot.start_code)}</code>
                                        ". Anyone else gets a polite refusal."
                                    </p>
                                    <p data-testid="telegram-allowed">
                                        {if bot.allowed_users.is_empty() {
                                            "Nobody is let in yet.".to_owned()
                                        } else {
                                            format!(
                                                "Let in (Telegram user ids): {}",
                                                bot.allowed_users
                                                    .iter()
                                                    .map(|u| u.to_string())
                                                    .collect::<Vec<_>>()
                                                    .join(", "),
                                            )
                                        }}
                                    </p>
                                    <ActionForm action=reset attr:class="inline">
                                        <input type="hidden" name="agent_id" value=for_reset/>
                                        <button type="submit">"Let nobody in (new code)"</button>
                                    </ActionForm>
                                    <ActionForm action=disconnect attr:class="inline">
                                        <input type="hidden" name="agent_id" value=for_disconnect/>
                                        <button type="submit" class="danger">"Disconnect bot"</button>
                                    </ActionForm>
                                })
                            }
                            Ok(None) => Either::Right(Either::Left(view! {
                                <p class="muted">
                                    "Let people talk to this agent in Telegram: create a bot with "
                                    "@BotFather, then paste the token it gives you. The token is stored "
                                    "encrypted; each Telegram chat becomes one of the agent's conversations."
                                </p>
                                <ActionForm action=connect>
                                    <input type="hidden" name="agent_id" value=agent_id.clone()/>
                                    <FormError error=error/>
                                    <div class="field" class:invalid=move || token_error().is_some()>
                                        <label for="field-telegram-token">"Bot token"</label>
                                        <input
                                            id="field-telegram-token"
                                            name="token"
                                            type="password"
                                            autocomplete="off"
                                            required
                                            placeholder="123456789:AAE…"
                                            aria-describedby="field-telegram-token-error"
                                            aria-invalid=move || token_error().is_some().to_string()
                                        />
                                        <p class="field-error" id="field-telegram-token-error">{token_error}</p>
                                    </div>
                                    <button type="submit" class="primary" disabled=move || connect.pending().get()>
                                        "Connect bot"
                                    </button>
                                </ActionForm>
                            })),
                            Err(err) => Either::Right(Either::Right(view! {
                                <p class="form-error" role="alert">{err.to_string()}</p>
                            })),
                        }
                    })
                }}
            </Transition>
        </section>
    }
}

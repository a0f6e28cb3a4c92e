-- The offline demo model: a provider served by Enclave itself in
-- development (ENCLAVE_DEMO_MODEL=1), so a new user can chat with no API key.
ALTER TABLE agents DROP CONSTRAINT agents_provider_check;
ALTER TABLE agents ADD CONSTRAINT agents_provider_check
    CHECK (provider IN ('openai', 'anthropic', 'google', 'openai_compatible', 'demo'));

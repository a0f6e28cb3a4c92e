//! The browser's half of passkeys, from the WASM: `app/js/passkeys.js`
//! turns Enclave's options into `navigator.credentials` calls and the
//! answers back into JSON. Without the hydrated app (or a browser without
//! WebAuthn) there is nothing to call, and the pages say so.

use crate::error::AppError;

#[cfg(feature = "hydrate")]
mod js {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen(module = "/js/passkeys.js")]
    extern "C" {
        #[wasm_bindgen(js_name = passkeysSupported)]
        pub fn passkeys_supported() -> bool;
        #[wasm_bindgen(js_name = createPasskey, catch)]
        pub async fn create_passkey(options: &str) -> Result<JsValue, JsValue>;
        #[wasm_bindgen(js_name = getPasskey, catch)]
        pub async fn get_passkey(options: &str) -> Result<JsValue, JsValue>;
    }
}

/// Whether this browser can use passkeys (false on the server).
pub fn supported() -> bool {
    #[cfg(feature = "hydrate")]
    {
        js::passkeys_supported()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        false
    }
}

const CANCELLED: &str =
    "The passkey was not used (cancelled, or this device has none for Enclave).";

/// Makes a passkey for the options; its answer as JSON.
#[allow(clippy::unused_async)]
pub async fn create(options: &str) -> Result<String, AppError> {
    #[cfg(feature = "hydrate")]
    {
        js::create_passkey(options)
            .await
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| AppError::invalid("credential", CANCELLED))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = options;
        Err(AppError::invalid("credential", CANCELLED))
    }
}

/// Asks the browser for a passkey for the options; its answer as JSON.
#[allow(clippy::unused_async)]
pub async fn get(options: &str) -> Result<String, AppError> {
    #[cfg(feature = "hydrate")]
    {
        js::get_passkey(options)
            .await
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| AppError::invalid("credential", CANCELLED))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = options;
        Err(AppError::invalid("credential", CANCELLED))
    }
}

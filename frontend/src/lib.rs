//! The WASM entry point: hydrates the server-rendered page. Nothing else lives here.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    app::hydrate();
}

/// Room for `cargo leptos --split` to move each lazy page's strings into
/// that page's own file. wasm-split lays the read-only data out again per
/// file, each file's share aligned, and when the result is longer than the
/// linker's segment it gives up and keeps all of it in the first load (it
/// did, over by 267 bytes: every page's text, 299 KB, 91.6 KB of it in
/// brotli; with this room the first load keeps 75 KB). These bytes
/// are kept by the linker (`#[used]`) but read by no code, so wasm-split
/// places them in no file: they cost nothing in what the browser loads and
/// leave the re-laid-out data room to fit. The release build's first-load
/// figure in `make bench` shows whether it still does. The fix belongs in
/// the splitter: WorldSEnder/wasm-split-prototype#60 (open) folds modules'
/// data into the main one until the segment fits, instead of giving up on
/// all of it. Once cargo-leptos ships a splitter with it, this can go.
#[used]
static SPLIT_DATA_ROOM: [u8; 16 * 1024] = [0x5a; 16 * 1024];

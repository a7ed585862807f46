//! Any bytes as one request frame (without its length prefix), decoded exactly as a broker does: header, shape
//! check, body. It must return, never panic or abort (a lying array length used to make the decoder allocate
//! gigabytes; the shape check refuses it first). libFuzzer's default -rss_limit_mb catches such allocations.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = openmrs_etl_harness::broker::fuzz_request_decode(data);
});

#![no_main]

libfuzzer_sys::fuzz_target!(init: klp_fuzz::init(), |data: &[u8]| {
    klp_fuzz::check(data);
});

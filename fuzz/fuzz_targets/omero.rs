//! The omero connector's decoding of server answers: any bytes, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    crossdex_connector_omero::fuzzing::decode(data);
});

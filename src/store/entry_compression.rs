//! Compressing an entry's bytes for its frame in `log.entries`: zstd,
//! level 1, against a fixed dictionary of typical entries.
//!
//! Why a dictionary: an entry is compressed alone (it is read alone), and
//! alone it is too short for zstd to learn its own repetitions; the member
//! names, seals and escaped disclosures every entry shares are what the
//! dictionary holds. A dictionary is part of the format: a frame names the
//! one it was written with (zstd's dictionary id, 0 for a raw-content
//! dictionary) and is read with that one, so a dictionary, once used,
//! never changes (a test pins each digest). A new one gets a new id.
//!
//! The dictionaries, oldest first:
//! - `entry_dictionary.txt`, id 0: four stored entries with generic values,
//!   as raw content (frames written before the trained one existed).
//! - `entry_dictionary.zdict`: trained by zstd on 4,000 synthetic entries
//!   sealed by this crate with random values (the ignored test
//!   `train_the_entry_dictionary` below). Trained, it carries entropy tables
//!   as well as content: compression takes about half the time of the raw
//!   one, and a little less space.

use std::cell::RefCell;
use std::sync::LazyLock;

use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// zstd's level: level 1 keeps the writer's cost at a few microseconds an
/// entry; level 3 saved ~4% more for ~35% more time.
const LEVEL: i32 = 1;
/// Shorter entries are stored as they are (compression would not pay).
const COMPRESS_FROM: usize = 128;
/// The most an entry's bytes may decompress to (a frame claiming more is
/// refused as corrupt rather than allocated).
const MAX_ENTRY: u64 = 64 << 20;

const RAW_DICTIONARY: &[u8] = include_bytes!("entry_dictionary.txt");
const TRAINED_DICTIONARY: &[u8] = include_bytes!("entry_dictionary.zdict");

static ENCODER: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(TRAINED_DICTIONARY, LEVEL));
static RAW_DECODER: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(RAW_DICTIONARY));
static TRAINED_DECODER: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(TRAINED_DICTIONARY));

thread_local! {
    // A context is costly to set up: one per thread and dictionary, reused.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSORS: RefCell<[Option<Decompressor<'static>>; 2]> =
        const { RefCell::new([None, None]) };
}

/// `bytes` compressed, or `None` when that fails or saves nothing (the
/// frame then holds the bytes as they are).
pub(super) fn compress(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < COMPRESS_FROM {
        return None;
    }
    COMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Compressor::with_prepared_dictionary(&ENCODER).ok();
        }
        let compressed = slot.as_mut()?.compress(bytes).ok()?;
        (compressed.len() < bytes.len()).then_some(compressed)
    })
}

/// A compressed payload's bytes; the error says why they cannot be had.
pub(super) fn decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    let size = match zstd::zstd_safe::get_frame_content_size(payload) {
        Ok(Some(size)) if size <= MAX_ENTRY => size as usize,
        Ok(Some(size)) => return Err(format!("they claim {size} bytes uncompressed")),
        _ => return Err("they are not a compressed entry".to_string()),
    };
    let id = zstd::zstd_safe::get_dict_id_from_frame(payload).map_or(0, |id| id.get());
    let (slot, dictionary): (usize, &DecoderDictionary<'static>) = match id {
        0 => (0, &RAW_DECODER),
        id if Some(id) == trained_id() => (1, &TRAINED_DECODER),
        id => {
            return Err(format!(
                "they name dictionary {id}, which this build does not have"
            ))
        }
    };
    DECOMPRESSORS.with_borrow_mut(|slots| {
        if slots[slot].is_none() {
            slots[slot] = Some(
                Decompressor::with_prepared_dictionary(dictionary).map_err(|e| e.to_string())?,
            );
        }
        let decompressor = slots[slot].as_mut().expect("set above");
        let bytes = decompressor
            .decompress(payload, size)
            .map_err(|e| format!("they do not decompress ({e})"))?;
        if bytes.len() != size {
            return Err(format!(
                "they decompress to {} bytes, not the {size} they claim",
                bytes.len()
            ));
        }
        Ok(bytes)
    })
}

fn trained_id() -> Option<u32> {
    zstd::zstd_safe::get_dict_id_from_dict(TRAINED_DICTIONARY).map(|id| id.get())
}

/// An entry as the log stores one, for tests: a line of the raw
/// dictionary with `marker` in it.
#[cfg(test)]
pub(super) fn entry_like(marker: &str) -> Vec<u8> {
    let text = std::str::from_utf8(RAW_DICTIONARY).unwrap();
    let line = text.lines().last().unwrap();
    line.replacen("\"kind\"", &format!("\"who\":\"{marker}\",\"kind\""), 1)
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;

    /// The dictionaries are part of the format: changing one makes every
    /// frame written with it unreadable.
    #[test]
    fn the_dictionaries_never_change() {
        assert_eq!(
            sha256_hex(RAW_DICTIONARY),
            "3a8b20a677733170ab739574254bebeeafc570995521ae48ce46e305d6995742"
        );
        assert_eq!(
            sha256_hex(TRAINED_DICTIONARY),
            "6fadebb92f29eb66a47f38bbb135d8cce9838eafcf82d237a29296c4fe1690c6"
        );
        assert!(trained_id().is_some_and(|id| id != 0));
    }

    #[test]
    fn an_entry_round_trips_and_names_its_dictionary() {
        let entry = entry_like("person-1");
        let compressed = compress(&entry).unwrap();
        assert!(compressed.len() * 3 < entry.len(), "{}", compressed.len());
        let id = zstd::zstd_safe::get_dict_id_from_frame(&compressed).map(|id| id.get());
        assert_eq!(id, trained_id());
        assert_eq!(decompress(&compressed).unwrap(), entry);
        assert_eq!(compress(b"{\"short\":1}"), None);
    }

    /// Frames written with the raw dictionary (id 0) still read.
    #[test]
    fn a_frame_of_the_raw_dictionary_still_reads() {
        let entry = entry_like("person-2");
        let mut old = Compressor::with_dictionary(LEVEL, RAW_DICTIONARY).unwrap();
        let compressed = old.compress(&entry).unwrap();
        assert_eq!(zstd::zstd_safe::get_dict_id_from_frame(&compressed), None);
        assert_eq!(decompress(&compressed).unwrap(), entry);
    }

    #[test]
    fn a_frame_that_claims_too_much_or_an_unknown_dictionary_is_refused() {
        let mut payload = zstd::bulk::compress(b"{}", 1).unwrap();
        // zstd's magic, then a frame header saying 8 bytes of content
        // size, single segment, and a size of terabytes.
        let mut huge = payload[..4].to_vec();
        huge.push(0xC0);
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        huge.extend_from_slice(&[0; 8]);
        let err = decompress(&huge).unwrap_err();
        assert!(err.contains("bytes uncompressed"), "{err}");
        payload.truncate(3);
        assert!(decompress(&payload).is_err());

        let dict = {
            let mut d = TRAINED_DICTIONARY.to_vec();
            // Another id in the dictionary's header (bytes 4..8).
            d[4] ^= 0xff;
            d
        };
        let mut other = Compressor::with_dictionary(LEVEL, &dict).unwrap();
        let frame = other.compress(&entry_like("x")).unwrap();
        let err = decompress(&frame).unwrap_err();
        assert!(err.contains("dictionary"), "{err}");
    }

    /// Writes `entry_dictionary.zdict`: zstd trained on synthetic entries
    /// this crate seals, with random values (no benchmark's or test's).
    /// Run once; never again for frames already written (a new dictionary
    /// needs a new id and its old one kept for reading).
    #[test]
    #[ignore = "regenerates a format constant"]
    fn train_the_entry_dictionary() {
        let samples = synthetic::entries(4000);
        let dictionary = zstd::dict::from_samples(&samples, 8192).unwrap();
        let at = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/store/entry_dictionary.zdict");
        std::fs::write(at, dictionary).unwrap();
    }

    mod synthetic {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        use serde_json::{json, Value};

        use crate::log::entry::LogEntry;
        use crate::log::sealed;

        const WORDS: &[&str] = &[
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "harbor", "indigo", "juniper",
            "kestrel", "lumen", "meridian", "nimbus", "orchid", "pioneer", "quartz", "raven",
            "summit", "tundra", "umber", "vertex", "willow", "xenon", "yarrow", "zephyr",
        ];
        const TLDS: &[&str] = &["com", "io", "net", "org", "dev", "ai", "co.uk"];

        struct Random(StdRng);

        impl Random {
            fn word(&mut self) -> &'static str {
                WORDS[self.0.gen_range(0..WORDS.len())]
            }
            fn host(&mut self) -> String {
                let tld = TLDS[self.0.gen_range(0..TLDS.len())];
                match self.0.gen_range(0..3) {
                    0 => format!("{}.{tld}", self.word()),
                    1 => format!("{}.{}.{tld}", self.word(), self.word()),
                    _ => format!("{}-agents.{}.{tld}", self.word(), self.word()),
                }
            }
            fn hex(&mut self, bytes: usize) -> String {
                (0..bytes)
                    .map(|_| format!("{:02x}", self.0.gen::<u8>()))
                    .collect()
            }
            fn b64(&mut self, chars: usize) -> String {
                const ALPHABET: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                (0..chars)
                    .map(|_| ALPHABET[self.0.gen_range(0..64)] as char)
                    .collect()
            }
            fn uuid(&mut self) -> String {
                uuid::Builder::from_random_bytes(self.0.gen())
                    .into_uuid()
                    .to_string()
            }
            fn time(&mut self) -> (String, i64) {
                let unix = self.0.gen_range(1_750_000_000..1_900_000_000i64);
                let micros = self.0.gen_range(0..1_000_000);
                let at = chrono::DateTime::from_timestamp(unix, micros * 1000).unwrap();
                (at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), unix)
            }
            fn scopes(&mut self) -> Vec<String> {
                let n = self.0.gen_range(1..5);
                (0..n)
                    .map(|_| {
                        format!(
                            "{}:{}",
                            self.word(),
                            ["read", "write", "admin"][self.0.gen_range(0..3)]
                        )
                    })
                    .collect()
            }
            fn tools(&mut self) -> Vec<String> {
                let n = self.0.gen_range(0..4);
                (0..n)
                    .map(|_| format!("{}_{}", self.word(), self.word()))
                    .collect()
            }
        }

        /// `n` sealed entries: connection decisions (with and without a
        /// `private_key_jwt` proof), grant issuances and tool calls.
        pub fn entries(n: usize) -> Vec<Vec<u8>> {
            let mut r = Random(StdRng::seed_from_u64(17));
            (0..n)
                .map(|i| {
                    let entry = match i % 8 {
                        0..=2 => decision(&mut r, true),
                        3..=4 => decision(&mut r, false),
                        5..=6 => grant(&mut r),
                        _ => tool_call(&mut r),
                    };
                    let entry: LogEntry = serde_json::from_value(entry).unwrap();
                    sealed::seal(&entry).unwrap()
                })
                .collect()
        }

        fn header(r: &mut Random, kind: &str) -> Value {
            let (time, _) = r.time();
            json!({
                "seq": r.0.gen_range(0..100_000_000u64), "time": time, "kind": kind,
                "policy_revision": r.hex(32), "trace_id": r.hex(16),
            })
        }

        fn merge(mut a: Value, b: Value) -> Value {
            if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
                a.extend(b);
            }
            a
        }

        fn decision(r: &mut Random, proof: bool) -> Value {
            let path =
                ["client.json", "oauth/client", "mcp/client-metadata.json"][r.0.gen_range(0..3)];
            let client = format!("https://{}/{path}", r.host());
            let as_issuer = format!("https://{}", r.host());
            let resource = format!("https://{}/mcp", r.host());
            let (now, now_unix) = r.time();
            let kid = if r.0.gen() {
                r.word().to_string()
            } else {
                r.b64(11)
            };
            let document = json!({
                "client_id": client, "client_name": format!("{} {}", r.word(), r.word()),
                "redirect_uris": [format!("https://{}/callback", r.host())],
                "token_endpoint_auth_method": if proof { "private_key_jwt" } else { "none" },
                "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid, "x": r.b64(43)}]},
            });
            let source = ["inline", "fetched"][r.0.gen_range(0..2)];
            let mut authentication = json!({
                "result": if proof { "verified" } else { "document_only" },
                "method": if proof { "private_key_jwt" } else { "none" },
                "issuer": if proof { Value::from(client.clone()) } else { Value::Null },
                "subject": client, "key_id": if proof { Value::from(kid.clone()) } else { Value::Null },
                "reasons": [],
                "document": {"source": source, "sha256": r.hex(32), "changed": r.0.gen::<bool>()},
                "keys": {"source": "inline"},
            });
            if proof {
                authentication["proof"] = json!({
                    "header": {"alg": "EdDSA", "kid": kid, "typ": "JWT"},
                    "claims": {"iss": client, "sub": client, "aud": as_issuer, "jti": r.uuid(),
                               "iat": now_unix - 5, "exp": now_unix + 295},
                    "sha256": r.hex(32),
                });
            }
            let requested = r.scopes();
            let split = r.0.gen_range(0..=requested.len());
            let (approved, denied) = requested.split_at(split);
            let session = r.uuid();
            let mut input = json!({
                "now": now, "now_unix": now_unix, "session_id": session, "resource": resource,
                "scopes": requested, "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": as_issuer}},
                "client": {"client_id": client, "host": r.host(), "redirect_uri": format!("https://{}/callback", r.host()),
                           "document": document, "assertion_present": proof},
                "authentication": authentication,
                "limits": {"default_ttl_seconds": 300, "max_ttl_seconds": 900},
            });
            if r.0.gen() {
                input["subject"] = json!({"iss": format!("https://{}", r.host()), "sub": r.uuid()});
            }
            let body = json!({
                "decision_id": r.uuid(), "session_id": session, "client_id": client,
                "grant_jti": if approved.is_empty() { Value::Null } else { Value::from(r.uuid()) },
                "input": input, "authentication": authentication,
                "decision": {
                    "outcome": if denied.is_empty() { "approved" } else if approved.is_empty() { "denied" } else { "reduced" },
                    "allow": !approved.is_empty(), "requested_scopes": requested, "approved_scopes": approved,
                    "denied_scopes": denied.iter().map(|s| json!({"scope": s, "reason": "unknown scope"})).collect::<Vec<_>>(),
                    "tools": r.tools(), "ttl_seconds": 300, "reasons": [],
                },
            });
            merge(header(r, "connection_decision"), body)
        }

        fn grant(r: &mut Random) -> Value {
            let client = format!("https://{}/client.json", r.host());
            let (decision_id, session) = (r.uuid(), r.uuid());
            let (_, iat) = r.time();
            let body = json!({
                "decision_id": decision_id, "session_id": session, "client_id": client,
                "token_sha256": r.hex(32),
                "grant": {"iss": "https://trustpath.local", "sub": client, "aud": format!("https://{}/mcp", r.host()),
                          "scope": r.scopes().join(" "), "tools": r.tools(), "sid": session, "jti": r.uuid(),
                          "decision_id": decision_id, "iat": iat, "exp": iat + 300},
            });
            merge(header(r, "grant_issued"), body)
        }

        fn tool_call(r: &mut Random) -> Value {
            let (now, now_unix) = r.time();
            let tool = format!("{}_{}", r.word(), r.word());
            let names: Vec<String> = (0..r.0.gen_range(0..4))
                .map(|_| r.word().to_string())
                .collect();
            let (session, jti) = (r.uuid(), r.uuid());
            let client = format!("https://{}/client.json", r.host());
            let body = json!({
                "tool_call_id": r.uuid(), "session_id": session, "grant_jti": jti, "decision_id": r.uuid(),
                "client_id": client, "tool": tool, "method": "tools/call",
                "input": {
                    "now": now, "now_unix": now_unix, "tool": tool, "method": "tools/call",
                    "actor": r.uuid(), "session_id": session, "grant_id": jti,
                    "arguments": {"names": names, "sha256": names.iter().map(|n| (n.clone(), Value::from(r.hex(32)))).collect::<serde_json::Map<_, _>>()},
                    "grant": {"valid": true, "scopes": r.scopes(), "tools": r.tools(), "client_id": client},
                },
                "decision": {"allow": r.0.gen::<bool>(), "reasons": [], "required_scopes": []},
            });
            merge(header(r, "tool_call"), body)
        }
    }
}

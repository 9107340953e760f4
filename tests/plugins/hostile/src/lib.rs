//! A plugin that misbehaves on purpose, chosen by `settings.mode`. The tests
//! use it to prove the host contains each kind of failure. Before misbehaving
//! in `deliver` it POSTs the message id to `webhook.url`, so a test can count
//! the attempts that reached the plugin.
//!
//! ```yaml
//! settings:
//!   mode: trap          # trap | loop | alloc | init-error | three-calls | ok
//! ```

use sinkhost_sdk::serde::Deserialize;
use sinkhost_sdk::{Config, Message, Outcome, Sink, export_sink, http};

#[derive(Deserialize)]
#[serde(crate = "sinkhost_sdk::serde", deny_unknown_fields)]
struct Settings {
    mode: String,
}

struct Hostile {
    url: String,
    mode: String,
}

impl Sink for Hostile {
    fn init(config: Config) -> Result<Self, String> {
        let Settings { mode } = config.settings()?;
        if mode == "init-error" {
            return Err("settings.mode is init-error: refusing to start".into());
        }
        Ok(Hostile {
            url: config.webhook.url,
            mode,
        })
    }

    fn deliver(&self, msg: &Message) -> Outcome {
        let ping = http::Request::post(&self.url)
            .header("Idempotency-Key", &msg.id)
            .body(format!("attempt {}", msg.attempt).into_bytes());
        let _ = http::send(&ping);
        match self.mode.as_str() {
            "trap" => panic!("hostile plugin: trapping on purpose"),
            "loop" => loop {
                std::hint::black_box(msg.attempt);
            },
            "three-calls" => {
                // a slow plugin, not a hostile one: its calls add up past ack_wait
                let _ = http::send(&ping);
                let _ = http::send(&ping);
                Outcome::Delivered
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                }
            }
            _ => Outcome::Delivered,
        }
    }
}

export_sink!(Hostile);

//! A real Kafka-compatible broker for integration tests: Tansu
//! (`cargo install tansu --features dynostore`, which scripts/test.sh runs
//! when it is missing), started on a free loopback port with in-memory
//! storage and killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use super::server;

pub struct Tansu {
    child: Child,
    pub brokers: String,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tansu {
    pub fn start() -> Tansu {
        let bin = server::binary("TANSU_BIN", &["tansu"], "cargo:tansu --version 0.6.0 --features dynostore --locked");
        let port = server::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let brokers = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&brokers).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {brokers} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Tansu { child, brokers }
    }

    pub async fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.brokers).create().expect("admin client");
        let new: Vec<NewTopic> = topics.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))).collect();
        let results = admin
            .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
            .await
            .expect("create topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t} on tansu: {e}"));
        }
    }
}

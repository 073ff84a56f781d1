//! librdkafka's mock cluster (the real Kafka protocol, in process) on its own thread, with
//! faults injected from async code: the harness of the Kafka sink's tests and of the sample
//! pipeline's end-to-end tests. Not used by the service.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio::sync::oneshot;

/// A mock cluster fault to apply.
#[derive(Debug)]
pub enum Fault {
    /// Broker id goes down.
    Down(i32),
    /// Broker id comes back.
    Up(i32),
    /// The next Produce requests, one error each.
    ProduceErrors(Vec<RDKafkaRespErr>),
}

/// A 3-broker mock cluster on its own thread: its handle is a raw librdkafka pointer (not
/// `Send`), while the faults come from the test's async tasks.
#[derive(Debug)]
pub struct MockKafka {
    /// `bootstrap.servers` of the cluster.
    pub bootstrap: String,
    faults: Option<mpsc::Sender<(Fault, oneshot::Sender<()>)>>,
    thread: Option<JoinHandle<()>>,
}

/// Applies faults to a [`MockKafka`]; cloneable into spawned tasks.
#[derive(Debug, Clone)]
pub struct Faults(mpsc::Sender<(Fault, oneshot::Sender<()>)>);

impl MockKafka {
    /// Three brokers (ids 1..=3) and `topic` with `partitions` partitions, partition p led by
    /// broker p % 3 + 1, so downing a broker stalls known partitions.
    pub fn start(topic: &str, partitions: i32) -> MockKafka {
        Self::start_topics(&[(topic, partitions)])
    }

    /// [`MockKafka::start`] with several topics, each (name, partitions), created before the
    /// cluster is handed out: a consumer subscribed to a topic that does not exist yet would
    /// only see it at its next metadata refresh.
    pub fn start_topics(topics: &[(&str, i32)]) -> MockKafka {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (faults_tx, faults_rx) = mpsc::channel::<(Fault, oneshot::Sender<()>)>();
        let topics: Vec<(String, i32)> = topics.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect();
        let thread = std::thread::spawn(move || {
            let cluster = MockCluster::new(3).expect("mock cluster");
            for (topic, partitions) in &topics {
                cluster.create_topic(topic, *partitions, 3).expect("create topic");
                for p in 0..*partitions {
                    cluster.partition_leader(topic, p, Some(p % 3 + 1)).expect("partition leader");
                }
            }
            ready_tx.send(cluster.bootstrap_servers()).expect("test waits");
            for (fault, done) in faults_rx {
                match &fault {
                    Fault::Down(broker) => cluster.broker_down(*broker),
                    Fault::Up(broker) => cluster.broker_up(*broker),
                    Fault::ProduceErrors(errors) => {
                        cluster.request_errors(RDKafkaApiKey::Produce, errors);
                        Ok(())
                    }
                }
                .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
                let _ = done.send(());
            }
        });
        let bootstrap = ready_rx.recv().expect("mock cluster started");
        MockKafka { bootstrap, faults: Some(faults_tx), thread: Some(thread) }
    }

    /// A handle to inject faults from async tasks.
    pub fn faults(&self) -> Faults {
        Faults(self.faults.clone().expect("running"))
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which drops the cluster.
        self.faults.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Faults {
    /// Returns once the cluster applied `fault`.
    pub async fn inject(&self, fault: Fault) {
        let (done, applied) = oneshot::channel();
        self.0.send((fault, done)).expect("mock cluster thread alive");
        applied.await.expect("fault applied");
    }

    /// Downs `broker` now and brings it back after `outage`, from a spawned task.
    pub async fn outage(&self, broker: i32, outage: Duration) -> tokio::task::JoinHandle<()> {
        self.inject(Fault::Down(broker)).await;
        let faults = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            faults.inject(Fault::Up(broker)).await;
        })
    }
}

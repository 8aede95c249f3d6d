//! Finality-aware steps: a pending step is re-polled until final, and acts again with the
//! same idempotency key after a reorg.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use merit_sagas::{SagaDefinition, SagaId, SagaState, StepContext, StepDef, StepOutcome};
use serde_json::json;

use crate::{
    common::{executor, Backend, TestDb},
    harness::{quick_retry, WAIT},
    on_both_backends,
};

on_both_backends! {
    a_pending_step_is_repolled_until_final_and_reacts_after_a_reorg => pending_step;
}

/// A fake chain: submitting with a key returns that key's transaction; each poll adds a
/// confirmation; the first transaction is dropped by a reorg at its second poll.
#[derive(Default)]
struct Chain {
    submissions: Vec<String>,
    confirmations: u32,
    reorged: bool,
    rpc_failed: bool,
    polls: u32,
}

async fn pending_step(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let chain = Arc::new(Mutex::new(Chain::default()));
    let c = chain.clone();
    let def = SagaDefinition::new("mint").step(
        StepDef::new("mint", move |ctx: StepContext| {
            let c = c.clone();
            async move {
                let previous: Option<String> = match ctx.previous() {
                    Ok(p) => p,
                    Err(e) => return e.into(),
                };
                let mut chain = c.lock().expect("chain");
                if let Some(tx) = previous {
                    chain.polls += 1;
                    if chain.polls == 4 && !chain.rpc_failed {
                        chain.rpc_failed = true; // a failed check spends an attempt, keeps the tx
                        return StepOutcome::retry("rpc timeout");
                    }
                    if chain.polls == 2 && !chain.reorged {
                        chain.reorged = true; // the tx vanished: act again, same key
                        chain.confirmations = 0;
                    } else {
                        chain.confirmations += 1;
                        if chain.confirmations >= 3 {
                            return StepOutcome::done(tx);
                        }
                        return StepOutcome::pending(tx, Duration::from_millis(30));
                    }
                }
                let tx = format!("tx:{}:{}", ctx.idempotency_key, chain.submissions.len());
                chain.submissions.push(ctx.idempotency_key.to_string());
                StepOutcome::pending(tx, Duration::from_millis(30))
            }
        })
        .retry(quick_retry(3)),
    );
    let exec = executor(db.store().await, "n1", vec![def]);
    let id = SagaId::random();
    exec.start("mint", id, &json!({})).await.expect("start");
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(
        view.saga.state,
        SagaState::Completed,
        "{:?}",
        view.saga.last_error
    );
    let chain = std::mem::take(&mut *chain.lock().expect("chain"));
    assert_eq!(
        chain.submissions.len(),
        2,
        "acted again after the reorg, once"
    );
    assert_eq!(
        chain.submissions[0], chain.submissions[1],
        "with the same idempotency key"
    );
    assert_eq!(chain.submissions[0], format!("{id}:0"));
    assert_eq!(
        chain.polls, 6,
        "1 poll + reorg + 1 failed check + 3 confirmations"
    );
    assert_eq!(
        view.steps[0].attempts, 2,
        "re-polls spend no attempts; the failed check spent one"
    );
    assert_eq!(view.steps[0].last_error.as_deref(), Some("rpc timeout"));
    assert_eq!(view.steps[0].output, Some(json!(format!("tx:{id}:0:1"))));
    db.cleanup().await;
}

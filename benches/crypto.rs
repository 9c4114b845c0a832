//! Envelope seal+sign and verify+open for a 200-byte message, beside the raw
//! primitives measured in the same run; and the same per message when 32
//! messages share one signature (as a burst of sends does).
//!
//! `cargo bench --bench crypto` runs the criterion groups and then prints a
//! summary table with rates per second and the ratio of envelope open to raw
//! Ed25519 verify (goal: at least 0.8). `cargo bench --bench crypto --
//! --summary` prints only the table.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{BatchSize, Criterion};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use kith::proto::crypto::*;
use kith::proto::ids::RoomId;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use std::time::{Duration, Instant};

const MESSAGE_LEN: usize = 200;

struct Fixture {
    sender: Identity,
    sender_public: PublicIdentity,
    start: SenderKeyDistribution,
    chain: SenderChain,
    raw_key: SigningKey,
    plaintext: Vec<u8>,
}

fn fixture() -> Fixture {
    let mut rng = StdRng::seed_from_u64(1);
    let sender = Identity::generate(&mut rng);
    let chain = SenderChain::new(
        &mut rng,
        ChainId {
            room: RoomId([9; 32]),
            epoch: 1,
            sender: sender.peer_id(),
        },
    );
    Fixture {
        sender_public: sender.public(),
        start: chain.distribution(),
        chain,
        sender,
        raw_key: SigningKey::generate(&mut rng),
        plaintext: vec![b'x'; MESSAGE_LEN],
    }
}

fn message(plaintext: &[u8]) -> OutgoingMessage<'_> {
    OutgoingMessage {
        kind: 1,
        timestamp: 1,
        plaintext,
    }
}

/// Everything the benches measure, as closures over prepared inputs.
struct Cases {
    raw_verify: Box<dyn FnMut()>,
    raw_verify_strict: Box<dyn FnMut()>,
    raw_open: Box<dyn FnMut()>,
    seal_sign: Box<dyn FnMut()>,
    verify_open: Box<dyn FnMut()>,
    batch_verify_open_64: Box<dyn FnMut()>,
    seal_sign_signed_batch_32: Box<dyn FnMut()>,
    check_open_signed_batch_32: Box<dyn FnMut()>,
}

fn cases() -> Cases {
    let f = fixture();

    let raw_signature = f.raw_key.sign(&f.plaintext);
    let raw_public = f.raw_key.verifying_key();
    let raw_message = f.plaintext.clone();
    let strict_message = raw_message.clone();
    let raw_verify = Box::new(move || {
        raw_public
            .verify(black_box(&raw_message), &raw_signature)
            .expect("valid signature");
    });
    let raw_verify_strict = Box::new(move || {
        raw_public
            .verify_strict(black_box(&strict_message), &raw_signature)
            .expect("valid signature");
    });

    let cipher = XChaCha20Poly1305::new((&[7u8; 32]).into());
    let nonce = XNonce::from([3u8; 24]);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &f.plaintext,
                aad: &[0u8; 86],
            },
        )
        .expect("small message");
    let raw_open = Box::new(move || {
        let cipher = XChaCha20Poly1305::new((&[7u8; 32]).into());
        black_box(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: black_box(&sealed),
                        aad: &[0u8; 86],
                    },
                )
                .expect("authentic"),
        );
    });

    let Fixture {
        sender,
        sender_public,
        start,
        mut chain,
        plaintext,
        ..
    } = f;
    let sender = std::rc::Rc::new(sender);
    let seal_sender = sender.clone();
    let seal_plaintext = plaintext.clone();
    let seal_sign = Box::new(move || {
        black_box(seal_envelope(&seal_sender, &mut chain, message(&seal_plaintext)).expect("seal"));
    });

    // Opening consumes the message key, so each open gets a receiver chain
    // positioned at the envelope's sequence number (a cheap clone).
    let mut first_chain = SenderChain::restore(start.chain, 0, start.chain_key.clone());
    let envelope = seal_envelope(&sender, &mut first_chain, message(&plaintext)).expect("seal");
    let single_start = start.clone();
    let single_public = sender_public.clone();
    let verify_open = Box::new(move || {
        let mut receiver = ReceiverChain::from_distribution(&single_start);
        let parsed = Envelope::parse(black_box(&envelope.emit())).expect("parse");
        black_box(open_envelope(&parsed, &single_public, &mut receiver).expect("open"));
    });

    // Sending as the daemon does: 32 messages sealed, then signed at once.
    let mut signed_batch_chain = SenderChain::restore(start.chain, 0, start.chain_key.clone());
    let signed_batch_sender = sender.clone();
    let signed_batch_plaintext = plaintext.clone();
    let seal_sign_signed_batch_32 = Box::new(move || {
        let unsigned = (0..MAX_SIGNED_BATCH)
            .map(|_| {
                seal_unsigned(&mut signed_batch_chain, message(&signed_batch_plaintext))
                    .expect("seal")
            })
            .collect();
        black_box(sign_batch(&signed_batch_sender, unsigned));
    });
    // Receiving them as the node does: one signature check for the batch
    // (each envelope's fingerprint names it), then every envelope opened.
    let mut one_batch_chain = SenderChain::restore(start.chain, 0, start.chain_key.clone());
    let one_batch: Vec<Envelope> = sign_batch(
        &sender,
        (0..MAX_SIGNED_BATCH)
            .map(|_| seal_unsigned(&mut one_batch_chain, message(&plaintext)).expect("seal"))
            .collect(),
    );
    let one_batch_start = start.clone();
    let one_batch_public = sender_public.clone();
    let check_open_signed_batch_32 = Box::new(move || {
        let mut receiver = ReceiverChain::from_distribution(&one_batch_start);
        let mut checked = None;
        for envelope in &one_batch {
            let print = envelope.signature_fingerprint();
            if checked != Some(print) {
                envelope
                    .verify_signature(&one_batch_public)
                    .expect("valid signature");
                checked = Some(print);
            }
            black_box(open_verified_envelope(envelope, &mut receiver).expect("open"));
        }
    });

    let mut batch_chain = SenderChain::restore(start.chain, 0, start.chain_key.clone());
    let batch: Vec<Envelope> = (0..64)
        .map(|_| seal_envelope(&sender, &mut batch_chain, message(&plaintext)).expect("seal"))
        .collect();
    let batch_verify_open_64 = Box::new(move || {
        let mut receiver = ReceiverChain::from_distribution(&start);
        let pairs: Vec<(&Envelope, &PublicIdentity)> =
            batch.iter().map(|e| (e, &sender_public)).collect();
        verify_envelopes_batch(&pairs).expect("all valid");
        for envelope in &batch {
            black_box(open_verified_envelope(envelope, &mut receiver).expect("open"));
        }
    });

    Cases {
        raw_verify,
        raw_verify_strict,
        raw_open,
        seal_sign,
        verify_open,
        batch_verify_open_64,
        seal_sign_signed_batch_32,
        check_open_signed_batch_32,
    }
}

fn criterion_groups(c: &mut Criterion) {
    let mut cases = cases();
    let mut group = c.benchmark_group("crypto_200B");
    group.bench_function("raw_ed25519_verify", |b| b.iter(&mut cases.raw_verify));
    group.bench_function("raw_ed25519_verify_strict", |b| {
        b.iter(&mut cases.raw_verify_strict)
    });
    group.bench_function("raw_xchacha20poly1305_open", |b| {
        b.iter(&mut cases.raw_open)
    });
    group.bench_function("envelope_seal_sign", |b| b.iter(&mut cases.seal_sign));
    group.bench_function("envelope_verify_open", |b| b.iter(&mut cases.verify_open));
    group.bench_function("envelope_batch64_verify_open", |b| {
        b.iter_batched(
            || (),
            |_| (cases.batch_verify_open_64)(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("envelope_signed_batch32_seal_sign", |b| {
        b.iter(&mut cases.seal_sign_signed_batch_32)
    });
    group.bench_function("envelope_signed_batch32_check_open", |b| {
        b.iter(&mut cases.check_open_signed_batch_32)
    });
    group.finish();
}

/// Runs `f` repeatedly for about `budget` and returns calls per second
/// (best of three rounds, to shrug off a busy neighbour on the machine).
fn rate(f: &mut dyn FnMut(), budget: Duration) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let mut calls = 0u64;
        while started.elapsed() < budget / 3 {
            for _ in 0..16 {
                f();
            }
            calls += 16;
        }
        best = best.max(calls as f64 / started.elapsed().as_secs_f64());
    }
    best
}

fn summary() {
    let mut cases = cases();
    let budget = Duration::from_millis(1500);
    let raw_verify = rate(&mut cases.raw_verify, budget);
    let raw_verify_strict = rate(&mut cases.raw_verify_strict, budget);
    let raw_open = rate(&mut cases.raw_open, budget);
    let seal_sign = rate(&mut cases.seal_sign, budget);
    let verify_open = rate(&mut cases.verify_open, budget);
    let batch = rate(&mut cases.batch_verify_open_64, budget) * 64.0;
    let signed_batch = MAX_SIGNED_BATCH as f64;
    let seal_signed_batch = rate(&mut cases.seal_sign_signed_batch_32, budget) * signed_batch;
    let open_signed_batch = rate(&mut cases.check_open_signed_batch_32, budget) * signed_batch;
    println!();
    println!("kith crypto, {MESSAGE_LEN}-byte messages, one core");
    println!("{:<42} {:>12}", "operation", "per second");
    for (name, value) in [
        ("raw Ed25519 verify", raw_verify),
        ("raw Ed25519 verify_strict", raw_verify_strict),
        ("raw XChaCha20-Poly1305 open", raw_open),
        ("envelope seal + sign", seal_sign),
        ("envelope verify + open", verify_open),
        ("envelope verify + open (batches of 64)", batch),
        ("envelope seal + sign (32 per signature)", seal_signed_batch),
        (
            "envelope check + open (32 per signature)",
            open_signed_batch,
        ),
    ] {
        println!("{name:<42} {value:>12.0}");
    }
    println!(
        "ratio envelope open / raw verify: {:.2} (batched: {:.2}); goal >= 0.80",
        verify_open / raw_verify,
        batch / raw_verify
    );
}

fn main() {
    let summary_only = std::env::args().any(|arg| arg == "--summary");
    if !summary_only {
        let mut criterion = Criterion::default()
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500))
            .configure_from_args();
        criterion_groups(&mut criterion);
        criterion.final_summary();
    }
    summary();
}

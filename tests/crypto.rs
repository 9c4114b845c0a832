//! Cryptography: known-answer vectors for the primitives, the pairwise
//! handshake, sender chains and envelopes, and negative property tests
//! (bit flips, swapped header fields, replays, forgeries).

use kith::proto::crypto::*;
use kith::proto::ids::{PeerId, RoomId};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("test vector is hex"))
        .collect()
}

fn hex32(text: &str) -> [u8; 32] {
    hex(text).try_into().expect("test vector is 32 bytes")
}

// ---------------------------------------------------------------------------
// Known-answer tests
// ---------------------------------------------------------------------------

#[test]
fn ed25519_rfc8032_test_1() {
    use ed25519_dalek::{Signer, SigningKey};
    let secret = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    let public = hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    let signature = hex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
    let key = SigningKey::from_bytes(&secret);
    assert_eq!(key.verifying_key().to_bytes(), public);
    assert_eq!(key.sign(b"").to_bytes().to_vec(), signature);
    // Our identity wraps exactly this key: same public key, id = blake3(pk).
    let identity = Identity::from_secret_bytes(&secret);
    assert_eq!(identity.public().to_bytes(), public);
    assert_eq!(identity.peer_id().0, *blake3::hash(&public).as_bytes());
}

#[test]
fn x25519_rfc7748_vectors() {
    // Section 5.2, first vector.
    let scalar = hex32("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    let point = hex32("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    let expected = hex32("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
    assert_eq!(x25519_dalek::x25519(scalar, point), expected);
    // Section 6.1: Alice and Bob agree.
    let alice = x25519_dalek::StaticSecret::from(hex32(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    let bob_public = x25519_dalek::PublicKey::from(hex32(
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    ));
    assert_eq!(
        x25519_dalek::PublicKey::from(&alice).to_bytes(),
        hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        alice.diffie_hellman(&bob_public).to_bytes(),
        hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    );
}

#[test]
fn xchacha20poly1305_draft_vector() {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let key = hex32("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce: [u8; 24] = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
        .try_into()
        .expect("24 bytes");
    let aad = hex("50515253c0c1c2c3c4c5c6c7");
    let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let mut expected = hex(
        "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e",
    );
    expected.extend(hex("c0875924c1c7987947deafd8780acf49"));
    let cipher = XChaCha20Poly1305::new((&key).into());
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("small message");
    assert_eq!(sealed, expected);
}

#[test]
fn blake3_official_vectors() {
    assert_eq!(
        blake3::hash(b"").to_hex().as_str(),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    // The official vectors use input bytes i % 251; length 1 is [0].
    assert_eq!(
        blake3::hash(&[0u8]).to_hex().as_str(),
        "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"
    );
}

// ---------------------------------------------------------------------------
// Identity and safety numbers
// ---------------------------------------------------------------------------

#[test]
fn safety_number_is_symmetric_and_well_formed() {
    let mut rng = StdRng::seed_from_u64(7);
    let alice = Identity::generate(&mut rng).public();
    let bob = Identity::generate(&mut rng).public();
    let carol = Identity::generate(&mut rng).public();
    let number = safety_number(&alice, &bob);
    assert_eq!(number, safety_number(&bob, &alice));
    let groups: Vec<&str> = number.split(' ').collect();
    assert_eq!(groups.len(), 12);
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
    );
    assert_ne!(number, safety_number(&alice, &carol));
}

#[test]
fn weak_public_keys_are_rejected() {
    // The identity point is a small-order point.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    assert_eq!(
        PublicIdentity::from_bytes(&identity_point),
        Err(CryptoError::BadPublicKey)
    );
}

// ---------------------------------------------------------------------------
// Pairwise handshake
// ---------------------------------------------------------------------------

struct Pair {
    alice: Identity,
    bob: Identity,
    a: PairwiseSession,
    b: PairwiseSession,
}

fn handshake(seed: u64) -> Pair {
    let mut rng = StdRng::seed_from_u64(seed);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let (initiator, init) = Initiator::start(&mut rng, Some(bob.peer_id()));
    let (responder, response) = Responder::handle_init(&mut rng, &bob, &init).expect("msg 2");
    let (a, finish) = initiator.handle_response(&alice, &response).expect("msg 3");
    let b = responder.handle_finish(&finish).expect("finished");
    Pair { alice, bob, a, b }
}

#[test]
fn handshake_authenticates_both_sides() {
    let Pair {
        alice,
        bob,
        mut a,
        mut b,
    } = handshake(1);
    assert_eq!(a.peer().peer_id(), bob.peer_id());
    assert_eq!(b.peer().peer_id(), alice.peer_id());
    assert_eq!(a.session_id(), b.session_id());

    let (counter, sealed) = a.seal(b"hdr", b"hello bob").expect("seal");
    assert_eq!(
        b.open(counter, b"hdr", &sealed).expect("open"),
        b"hello bob"
    );
    assert_eq!(
        b.open(counter, b"hdr", &sealed),
        Err(CryptoError::Replay),
        "replay"
    );
    let (counter, sealed) = b.seal(b"", b"hi alice").expect("seal");
    assert_eq!(a.open(counter, b"", &sealed).expect("open"), b"hi alice");
    // A message sealed for one direction cannot be opened in the other.
    let (counter, sealed) = a.seal(b"", b"to bob").expect("seal");
    assert!(a.open(counter, b"", &sealed).is_err());
}

#[test]
fn handshake_refuses_unexpected_responder() {
    let mut rng = StdRng::seed_from_u64(2);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let mallory = Identity::generate(&mut rng);
    let (initiator, init) = Initiator::start(&mut rng, Some(bob.peer_id()));
    let (_, response) = Responder::handle_init(&mut rng, &mallory, &init).expect("msg 2");
    assert_eq!(
        initiator.handle_response(&alice, &response).err(),
        Some(CryptoError::WrongPeer)
    );
}

#[test]
fn handshake_detects_substituted_ephemeral() {
    let mut rng = StdRng::seed_from_u64(3);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let (initiator, init) = Initiator::start(&mut rng, None);
    let (_, mut response) = Responder::handle_init(&mut rng, &bob, &init).expect("msg 2");
    // A man in the middle swaps in his own ephemeral key.
    let attacker = x25519_dalek::EphemeralSecret::random_from_rng(&mut rng);
    response.ephemeral = x25519_dalek::PublicKey::from(&attacker).to_bytes();
    assert!(initiator.handle_response(&alice, &response).is_err());
}

#[test]
fn handshake_rejects_low_order_ephemeral() {
    let mut rng = StdRng::seed_from_u64(4);
    let bob = Identity::generate(&mut rng);
    let init = HandshakeInit { ephemeral: [0; 32] };
    assert_eq!(
        Responder::handle_init(&mut rng, &bob, &init).err(),
        Some(CryptoError::WeakKey)
    );
}

#[test]
fn handshake_finish_cannot_be_replayed_into_another_session() {
    let mut rng = StdRng::seed_from_u64(5);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let (initiator, init) = Initiator::start(&mut rng, None);
    let (_, response) = Responder::handle_init(&mut rng, &bob, &init).expect("msg 2");
    let (_, finish) = initiator.handle_response(&alice, &response).expect("msg 3");
    // Bob answers the same init again (a retransmission): a new responder
    // ephemeral, so the old finish message must not complete it.
    let (second, _) = Responder::handle_init(&mut rng, &bob, &init).expect("msg 2 again");
    assert!(second.handle_finish(&finish).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn handshake_messages_with_any_bit_flipped_fail(which in 0usize..3, bit in 0usize..(112 * 8)) {
        let mut rng = StdRng::seed_from_u64(bit as u64);
        let alice = Identity::generate(&mut rng);
        let bob = Identity::generate(&mut rng);
        let (initiator, mut init) = Initiator::start(&mut rng, Some(bob.peer_id()));
        if which == 0 {
            init.ephemeral[(bit / 8) % 32] ^= 1 << (bit % 8);
        }
        let (responder, mut response) = match Responder::handle_init(&mut rng, &bob, &init) {
            Ok(step) => step,
            // A flipped ephemeral may be a low-order point: rejected early.
            Err(_) => return Ok(()),
        };
        if which == 1 {
            response.sealed[bit / 8] ^= 1 << (bit % 8);
        }
        let (_, mut finish) = match initiator.handle_response(&alice, &response) {
            Ok(step) => step,
            Err(_) => {
                // Alice notices a flipped init (transcript mismatch) or a
                // flipped response.
                prop_assert!(which == 0 || which == 1);
                return Ok(());
            }
        };
        prop_assert_eq!(which, 2, "a flip in message 1 or 2 went unnoticed");
        if which == 2 {
            finish.sealed[bit / 8] ^= 1 << (bit % 8);
        }
        // Whatever was flipped, Bob must not end up with a session with Alice.
        prop_assert!(responder.handle_finish(&finish).is_err());
    }

    #[test]
    fn sealed_pairwise_bit_flips_are_rejected(bit in 0usize..(40 * 8)) {
        let Pair { mut a, mut b, .. } = handshake(9);
        let (counter, mut sealed) = a.seal(b"aad", b"twenty-four bytes of msg").expect("seal");
        sealed[bit / 8] ^= 1 << (bit % 8);
        prop_assert_eq!(b.open(counter, b"aad", &sealed), Err(CryptoError::Unauthentic));
        // The failed attempt did not burn the counter.
        sealed[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(b.open(counter, b"aad", &sealed).is_ok());
    }
}

// ---------------------------------------------------------------------------
// Room envelopes
// ---------------------------------------------------------------------------

struct Room {
    alice: Identity,
    bob: Identity,
    alice_chain: SenderChain,
    /// Alice's chain as distributed to the members at the epoch start.
    alice_start: SenderKeyDistribution,
    /// Bob's view of Alice's chain.
    bob_follows_alice: ReceiverChain,
    bob_chain: SenderChain,
}

fn room(seed: u64) -> Room {
    let mut rng = StdRng::seed_from_u64(seed);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let room = RoomId([42; 32]);
    let alice_chain = SenderChain::new(
        &mut rng,
        ChainId {
            room,
            epoch: 3,
            sender: alice.peer_id(),
        },
    );
    let alice_start = alice_chain.distribution();
    let bob_follows_alice = ReceiverChain::from_distribution(&alice_start);
    let bob_chain = SenderChain::new(
        &mut rng,
        ChainId {
            room,
            epoch: 3,
            sender: bob.peer_id(),
        },
    );
    Room {
        alice,
        bob,
        alice_chain,
        alice_start,
        bob_follows_alice,
        bob_chain,
    }
}

fn text(plaintext: &[u8]) -> OutgoingMessage<'_> {
    OutgoingMessage {
        kind: 1,
        timestamp: 1_700_000_000_000,
        plaintext,
    }
}

#[test]
fn envelope_round_trip_and_id() {
    let mut r = room(1);
    let envelope = seal_envelope(&r.alice, &mut r.alice_chain, text(b"hello room")).expect("seal");
    let bytes = envelope.emit();
    let parsed = Envelope::parse(&bytes).expect("parse");
    assert_eq!(parsed, envelope);
    assert_eq!(parsed.id().0, *blake3::hash(&bytes).as_bytes());
    let plaintext =
        open_envelope(&parsed, &r.alice.public(), &mut r.bob_follows_alice).expect("open");
    assert_eq!(plaintext, b"hello room");
    assert_eq!(
        open_envelope(&parsed, &r.alice.public(), &mut r.bob_follows_alice),
        Err(CryptoError::Replay)
    );
}

#[test]
fn member_cannot_forge_as_another() {
    let mut r = room(2);
    // Bob knows Alice's chain key (he is a member), so he can produce a
    // ciphertext that decrypts, but he cannot sign as Alice.
    let mut stolen = SenderChain::restore(
        r.alice_chain.chain(),
        r.alice_chain.next_seq(),
        r.alice_chain.chain_key().clone(),
    );
    // Sealing with Bob's identity on Alice's chain: the signature is Bob's.
    let forged = seal_envelope_unchecked(&r.bob, &mut stolen, b"I am alice");
    assert_eq!(
        open_envelope(&forged, &r.alice.public(), &mut r.bob_follows_alice),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        open_envelope(&forged, &r.bob.public(), &mut r.bob_follows_alice),
        Err(CryptoError::WrongPeer)
    );
    // Alice's real message still opens: the forgery did not move the chain.
    let real = seal_envelope(&r.alice, &mut r.alice_chain, text(b"real")).expect("seal");
    assert_eq!(
        open_envelope(&real, &r.alice.public(), &mut r.bob_follows_alice).expect("open"),
        b"real"
    );
}

/// Seals on a chain that belongs to someone else, as a malicious member
/// would (release builds skip the debug assertion that guards honest use).
fn seal_envelope_unchecked(
    signer: &Identity,
    chain: &mut SenderChain,
    plaintext: &[u8],
) -> Envelope {
    let honest_chain = SenderChain::restore(
        ChainId {
            sender: signer.peer_id(),
            ..chain.chain()
        },
        chain.next_seq(),
        chain.chain_key().clone(),
    );
    let mut honest_chain = honest_chain;
    let mut envelope = seal_envelope(signer, &mut honest_chain, text(plaintext)).expect("seal");
    // Claim the other sender; the signature stays the signer's.
    envelope.header.sender = chain.chain().sender;
    envelope
}

/// Seals `count` messages on Alice's chain and signs them as one batch.
fn alice_batch(r: &mut Room, count: usize) -> Vec<Envelope> {
    let unsigned = (0..count)
        .map(|i| {
            let body = format!("message {i}");
            seal_unsigned(&mut r.alice_chain, text(body.as_bytes())).expect("seal")
        })
        .collect();
    sign_batch(&r.alice, unsigned)
}

#[test]
fn batch_signed_envelopes_each_prove_their_author() {
    for count in [1, 2, 3, 5, 31, 32, 33, 70] {
        let mut r = room(20 + count as u64);
        let envelopes = alice_batch(&mut r, count);
        assert_eq!(envelopes.len(), count);
        // One signature per 32 envelopes, each with a proof no deeper than
        // the tree of its chunk.
        let mut signatures: Vec<[u8; 64]> = envelopes.iter().map(|e| e.signature).collect();
        signatures.dedup();
        assert_eq!(
            signatures.len(),
            count.div_ceil(MAX_SIGNED_BATCH),
            "{count}"
        );
        for (i, envelope) in envelopes.iter().enumerate() {
            let chunk_len = (count - i / MAX_SIGNED_BATCH * MAX_SIGNED_BATCH).min(MAX_SIGNED_BATCH);
            let depth = envelope.proof.as_ref().expect("version 2").siblings.len();
            let tree_depth = chunk_len.next_power_of_two().trailing_zeros() as usize;
            assert!(
                depth <= tree_depth && tree_depth <= MAX_BATCH_DEPTH,
                "{count}: depth {depth}"
            );
            // Each travels and is stored on its own: it parses back to
            // itself and opens (in reverse order here) with its own proof.
            assert_eq!(Envelope::parse(&envelope.emit()).as_ref(), Ok(envelope));
        }
        for (i, envelope) in envelopes.iter().enumerate().rev() {
            let body = open_envelope(envelope, &r.alice.public(), &mut r.bob_follows_alice)
                .expect("opens");
            assert_eq!(body, format!("message {i}").as_bytes());
        }
        // Every envelope of a chunk needs the same signature check.
        let prints: Vec<[u8; 32]> = envelopes
            .iter()
            .map(|e| e.signature_fingerprint())
            .collect();
        for (i, print) in prints.iter().enumerate() {
            assert_eq!(*print, prints[i / MAX_SIGNED_BATCH * MAX_SIGNED_BATCH]);
        }
    }
}

#[test]
fn a_proof_only_fits_its_own_envelope() {
    let mut r = room(30);
    let envelopes = alice_batch(&mut r, 5);
    let alice = r.alice.public();
    let proof_of = |e: &Envelope| e.proof.clone().expect("version 2");
    // Another envelope's proof, a changed sibling, a flipped side: each
    // leads to another root, which the signature does not cover.
    let mut borrowed = envelopes[0].clone();
    borrowed.proof = Some(proof_of(&envelopes[1]));
    let mut changed = envelopes[2].clone();
    let mut proof = proof_of(&changed);
    proof.siblings[0][7] ^= 1;
    changed.proof = Some(proof);
    let mut flipped = envelopes[3].clone();
    let mut proof = proof_of(&flipped);
    proof.left ^= 1;
    flipped.proof = Some(proof);
    let mut shortened = envelopes[4].clone();
    let mut proof = proof_of(&shortened);
    proof.siblings.pop();
    proof.left &= (1 << proof.siblings.len()) - 1;
    shortened.proof = Some(proof);
    for forged in [&borrowed, &changed, &flipped, &shortened] {
        assert_eq!(
            forged.verify_signature(&alice),
            Err(CryptoError::BadSignature)
        );
        assert_ne!(
            forged.signature_fingerprint(),
            envelopes[0].signature_fingerprint()
        );
    }
    // A batch signature cannot be moved onto a message of another batch.
    let mut other = alice_batch(&mut r, 1).remove(0);
    other.signature = envelopes[0].signature;
    other.proof = Some(proof_of(&envelopes[0]));
    assert_eq!(
        other.verify_signature(&alice),
        Err(CryptoError::BadSignature)
    );
    // The untouched ones are fine.
    for envelope in &envelopes {
        assert_eq!(envelope.verify_signature(&alice), Ok(()));
    }
}

#[test]
fn a_member_cannot_hide_a_forgery_in_someone_elses_batch() {
    let mut r = room(31);
    let batch = alice_batch(&mut r, 4);
    // Bob knows Alice's chain key and builds a message on her chain, then
    // dresses it in her batch's signature and a proof: without a blake3
    // collision no proof leads from his leaf to her signed root.
    let mut stolen = SenderChain::restore(
        r.alice_chain.chain(),
        r.alice_chain.next_seq(),
        r.alice_chain.chain_key().clone(),
    );
    let mut forged = Envelope {
        proof: batch[0].proof.clone(),
        signature: batch[0].signature,
        ..seal_envelope_unchecked(&r.bob, &mut stolen, b"I am alice")
    };
    assert_eq!(
        open_envelope(&forged, &r.alice.public(), &mut r.bob_follows_alice),
        Err(CryptoError::BadSignature)
    );
    forged.proof = Some(BatchProof::default());
    assert_eq!(
        open_envelope(&forged, &r.alice.public(), &mut r.bob_follows_alice),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn wrong_chain_is_rejected() {
    let mut r = room(3);
    let from_bob = seal_envelope(&r.bob, &mut r.bob_chain, text(b"bob")).expect("seal");
    // Valid signature, but Bob's message is not on Alice's chain.
    assert_eq!(
        open_envelope(&from_bob, &r.bob.public(), &mut r.bob_follows_alice),
        Err(CryptoError::WrongChain)
    );
}

#[test]
fn far_future_sequence_is_bounded() {
    let mut r = room(4);
    let mut far = SenderChain::restore(
        r.alice_chain.chain(),
        MAX_SKIP + 10,
        r.alice_chain.chain_key().clone(),
    );
    let envelope = seal_envelope(&r.alice, &mut far, text(b"far")).expect("seal");
    assert_eq!(
        open_envelope(&envelope, &r.alice.public(), &mut r.bob_follows_alice),
        Err(CryptoError::TooFarAhead)
    );
}

#[test]
fn epoch_change_locks_out_old_chain_holders() {
    // A removed member keeps the old epoch's distribution; the new epoch's
    // chain is fresh, so it cannot open anything sent after.
    let mut rng = StdRng::seed_from_u64(11);
    let r = room(5);
    let mut removed_view = ReceiverChain::from_distribution(&r.alice_start);
    let mut new_chain = SenderChain::new(
        &mut rng,
        ChainId {
            epoch: 4,
            ..r.alice_chain.chain()
        },
    );
    let after = seal_envelope(&r.alice, &mut new_chain, text(b"after removal")).expect("seal");
    assert_eq!(
        open_envelope(&after, &r.alice.public(), &mut removed_view),
        Err(CryptoError::WrongChain)
    );
    // Even relabelling the old key as the new epoch's does not help.
    let mut old_view_relabelled = ReceiverChain::from_distribution(&SenderKeyDistribution {
        chain: new_chain.chain(),
        start_seq: 0,
        chain_key: r.alice_start.chain_key.clone(),
    });
    assert_eq!(
        open_envelope(&after, &r.alice.public(), &mut old_view_relabelled),
        Err(CryptoError::Unauthentic)
    );
}

#[test]
fn batch_verification_matches_single() {
    let mut r = room(6);
    let envelopes: Vec<Envelope> = (0..16)
        .map(|i| {
            seal_envelope(
                &r.alice,
                &mut r.alice_chain,
                text(format!("m{i}").as_bytes()),
            )
            .expect("seal")
        })
        .collect();
    let alice = r.alice.public();
    let pairs: Vec<(&Envelope, &PublicIdentity)> = envelopes.iter().map(|e| (e, &alice)).collect();
    assert_eq!(verify_envelopes_batch(&pairs), Ok(()));
    let mut bad = envelopes.clone();
    bad[7].ciphertext[0] ^= 1;
    let pairs: Vec<(&Envelope, &PublicIdentity)> = bad.iter().map(|e| (e, &alice)).collect();
    assert_eq!(
        verify_envelopes_batch(&pairs),
        Err(CryptoError::BadSignature)
    );
    for envelope in &envelopes {
        assert!(open_verified_envelope(envelope, &mut r.bob_follows_alice).is_ok());
    }
}

#[test]
fn secret_key_is_zeroized_on_drop() {
    let key = SecretKey::from_bytes([0xA5; 32]);
    let mut slot = std::mem::MaybeUninit::new(key);
    // SAFETY: `slot` holds an initialised `SecretKey`, dropped exactly once
    // here. `SecretKey` is `repr(transparent)` over `[u8; 32]`, and its drop
    // leaves those bytes initialised (zeroed), so reading them is sound.
    let after_drop: [u8; 32] = unsafe {
        std::ptr::drop_in_place(slot.as_mut_ptr());
        std::ptr::read(slot.as_ptr().cast::<[u8; 32]>())
    };
    assert_eq!(after_drop, [0u8; 32]);
}

#[test]
fn long_term_and_ephemeral_secrets_zeroize_on_drop() {
    fn zeroizes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroizes_on_drop::<ed25519_dalek::SigningKey>();
    zeroizes_on_drop::<x25519_dalek::EphemeralSecret>();
    zeroizes_on_drop::<SecretKey>();
}

fn header_mutations() -> impl Strategy<Value = (usize, u8)> {
    // Field index into the header and a non-zero xor mask.
    (0usize..6, 1u8..=255)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn envelope_bit_flips_are_rejected(bit in 0usize..((ENVELOPE_OVERHEAD + 30) * 8)) {
        let mut r = room(7);
        let envelope = seal_envelope(&r.alice, &mut r.alice_chain, text(b"fourteen bytes")).expect("seal");
        let mut bytes = envelope.emit();
        prop_assume!(bit / 8 < bytes.len());
        bytes[bit / 8] ^= 1 << (bit % 8);
        if let Ok(tampered) = Envelope::parse(&bytes) {
            prop_assert!(open_envelope(&tampered, &r.alice.public(), &mut r.bob_follows_alice).is_err());
        }
        // The untampered envelope still opens exactly once afterwards.
        prop_assert!(open_envelope(&envelope, &r.alice.public(), &mut r.bob_follows_alice).is_ok());
    }

    #[test]
    fn swapped_header_fields_fail_aead_even_without_signature((field, mask) in header_mutations()) {
        // Skip the signature (as if an attacker could forge it): the AEAD's
        // associated data alone must still bind every header field.
        let mut r = room(8);
        let mut envelope = seal_envelope(&r.alice, &mut r.alice_chain, text(b"bound")).expect("seal");
        let h = &mut envelope.header;
        match field {
            0 => h.room.0[0] ^= mask,
            1 => h.epoch ^= u32::from(mask),
            2 => h.sender.0[31] ^= mask,
            3 => h.seq ^= u64::from(mask),
            4 => h.kind ^= mask,
            _ => h.timestamp ^= u64::from(mask),
        }
        let mut follower = ReceiverChain::from_distribution(&SenderKeyDistribution {
            chain: ChainId { room: h.room, epoch: h.epoch, sender: h.sender },
            start_seq: 0,
            chain_key: r.alice_start.chain_key.clone(),
        });
        prop_assert!(open_verified_envelope(&envelope, &mut follower).is_err());
        // And with the signature checked, it fails there first.
        prop_assert!(open_envelope(&envelope, &r.alice.public(), &mut r.bob_follows_alice).is_err());
    }

    #[test]
    fn reordered_and_duplicated_within_window_accepted_exactly_once(
        order in Just((0u64..64).collect::<Vec<_>>()).prop_shuffle(),
        duplicates in proptest::collection::vec(0usize..64, 0..32),
    ) {
        let mut r = room(9);
        let envelopes: Vec<Envelope> = (0..64)
            .map(|i| seal_envelope(&r.alice, &mut r.alice_chain, text(&[i as u8; 3])).expect("seal"))
            .collect();
        let mut delivery: Vec<usize> = order.iter().map(|&i| i as usize).collect();
        for (k, d) in duplicates.iter().enumerate() {
            delivery.insert((k * 7) % delivery.len(), *d);
        }
        let mut accepted = vec![0u32; 64];
        for index in delivery {
            if let Ok(plaintext) = open_envelope(&envelopes[index], &r.alice.public(), &mut r.bob_follows_alice) {
                prop_assert_eq!(plaintext, vec![index as u8; 3]);
                accepted[index] += 1;
            }
        }
        prop_assert!(accepted.iter().all(|&n| n == 1), "{:?}", accepted);
        prop_assert_eq!(r.bob_follows_alice.skipped_len(), 0);
    }
}

#[test]
fn peer_ids_are_distinct_per_identity() {
    let mut rng = StdRng::seed_from_u64(10);
    let ids: std::collections::HashSet<PeerId> = (0..100)
        .map(|_| Identity::generate(&mut rng).peer_id())
        .collect();
    assert_eq!(ids.len(), 100);
}

// ---------------------------------------------------------------------------
// Chain snapshots
// ---------------------------------------------------------------------------

/// Encodes and decodes a snapshot, as a restart through the store does.
fn through_bytes(snapshot: &ChainSnapshot) -> ChainSnapshot {
    let bytes = snapshot.encode();
    assert!(bytes.len() <= MAX_SNAPSHOT_LEN);
    let decoded = ChainSnapshot::decode(&bytes).expect("a fresh encoding decodes");
    assert_eq!(&decoded, snapshot);
    decoded
}

#[test]
fn restored_receiver_behaves_exactly_like_the_original() {
    let mut r = room(12);
    let alice = r.alice.public();
    let envelopes: Vec<Envelope> = (0..1600u32)
        .map(|i| seal_envelope(&r.alice, &mut r.alice_chain, text(&i.to_le_bytes())).expect("seal"))
        .collect();
    // Out of order, then a jump far enough that early skipped positions
    // fall out of the replay window (1500 - 1024 > 100).
    for seq in [0usize, 1, 5, 3, 7, 1500] {
        open_envelope(&envelopes[seq], &alice, &mut r.bob_follows_alice).expect("open");
    }
    assert!(r.bob_follows_alice.skipped_len() > 1000);

    let snapshot = r.bob_follows_alice.snapshot(0);
    assert_eq!(snapshot.role, ChainRole::Receiving);
    assert_eq!(snapshot.next_seq, 1501);
    assert_eq!(snapshot.skipped_len(), r.bob_follows_alice.skipped_len());
    let mut restored = ReceiverChain::from_snapshot(&through_bytes(&snapshot)).expect("restore");
    assert_eq!(restored.chain(), r.bob_follows_alice.chain());
    assert_eq!(restored.skipped_len(), r.bob_follows_alice.skipped_len());

    // Replays, skipped keys inside and outside the window, the next one,
    // ahead ones, and replays of those: every answer must match.
    let deliveries = [
        0usize, 1, 3, 5, 7, 1500, 2, 4, 6, 100, 476, 477, 1499, 1501, 1599, 1550, 1501, 2, 1599,
    ];
    for seq in deliveries {
        let original = open_envelope(&envelopes[seq], &alice, &mut r.bob_follows_alice);
        let after_restart = open_envelope(&envelopes[seq], &alice, &mut restored);
        assert_eq!(after_restart, original, "seq {seq}");
    }
    // Spot-check the expectations themselves, so the test is not vacuous.
    let mut fresh = ReceiverChain::from_snapshot(&snapshot).expect("restore");
    assert_eq!(
        open_envelope(&envelopes[1500], &alice, &mut fresh),
        Err(CryptoError::Replay)
    );
    assert_eq!(
        open_envelope(&envelopes[3], &alice, &mut fresh),
        Err(CryptoError::TooOld)
    );
    // Below the window, a skipped key still held opens its message, once.
    assert_eq!(
        open_envelope(&envelopes[100], &alice, &mut fresh).expect("skipped key kept"),
        100u32.to_le_bytes()
    );
    assert_eq!(
        open_envelope(&envelopes[100], &alice, &mut fresh),
        Err(CryptoError::TooOld)
    );
    assert_eq!(
        open_envelope(&envelopes[1499], &alice, &mut fresh).expect("skipped key kept"),
        1499u32.to_le_bytes()
    );
    assert_eq!(
        open_envelope(&envelopes[1550], &alice, &mut fresh).expect("ahead"),
        1550u32.to_le_bytes()
    );
    // And both end in the same state.
    assert_eq!(restored.snapshot(0), r.bob_follows_alice.snapshot(0));
}

#[test]
fn restored_sender_continues_the_chain() {
    let mut r = room(13);
    let alice = r.alice.public();
    for i in 0..3u8 {
        let envelope = seal_envelope(&r.alice, &mut r.alice_chain, text(&[i])).expect("seal");
        open_envelope(&envelope, &alice, &mut r.bob_follows_alice).expect("open");
    }
    let snapshot = r.alice_chain.snapshot();
    assert_eq!(snapshot.role, ChainRole::Sending);
    assert_eq!(snapshot.next_seq, 3);
    drop(r.alice_chain);
    let mut restored = SenderChain::from_snapshot(&through_bytes(&snapshot)).expect("restore");
    assert_eq!(restored.next_seq(), 3);
    for i in 3..6u8 {
        let envelope = seal_envelope(&r.alice, &mut restored, text(&[i])).expect("seal");
        assert_eq!(envelope.header.seq, u64::from(i));
        assert_eq!(
            open_envelope(&envelope, &alice, &mut r.bob_follows_alice).expect("open"),
            [i]
        );
    }
    // A sending snapshot carries no receiving state.
    assert_eq!(snapshot.encode().len(), 1 + 1 + 32 + 4 + 32 + 8 + 8 + 32);
}

#[test]
fn a_reservation_restores_ahead_of_every_seal_and_round_trips() {
    let mut r = room(21);
    let alice = r.alice.public();
    for i in 0..3u8 {
        let envelope = seal_envelope(&r.alice, &mut r.alice_chain, text(&[i])).expect("seal");
        open_envelope(&envelope, &alice, &mut r.bob_follows_alice).expect("open");
    }
    let reservation = r.alice_chain.reservation(10).expect("reserve");
    assert!(reservation.reserved);
    assert_eq!(reservation.next_seq, 13);
    // Version 2 with the reserved flag: one byte more than version 1.
    assert_eq!(
        reservation.encode().len(),
        1 + 1 + 32 + 4 + 32 + 8 + 8 + 32 + 1
    );
    let decoded = through_bytes(&reservation);
    let mut restored = SenderChain::from_snapshot(&decoded).expect("restore");
    let envelope = seal_envelope(&r.alice, &mut restored, text(b"after")).expect("seal");
    assert_eq!(envelope.header.seq, 13);
    // The receiver skips the ten reserved positions like lost messages.
    assert_eq!(
        open_envelope(&envelope, &alice, &mut r.bob_follows_alice).expect("open"),
        b"after"
    );
    // A receiving snapshot with an origin digest round-trips too, and a
    // reserved receiving snapshot or a sending one with an origin does not
    // restore.
    let mut receiving = r.bob_follows_alice.snapshot(0);
    receiving.origin = Some([9; 32]);
    assert_eq!(through_bytes(&receiving).origin, Some([9; 32]));
    receiving.reserved = true;
    assert_eq!(
        ChainSnapshot::decode(&receiving.encode()),
        Err(SnapshotError::Inconsistent)
    );
}

#[test]
fn a_skipped_key_far_below_the_replay_window_still_opens_once() {
    let mut r = room(23);
    let alice = r.alice.public();
    let late = seal_envelope(&r.alice, &mut r.alice_chain, text(b"late")).expect("seal");
    // Alice goes on; Bob gets only her later messages, far past the window.
    let mut last = None;
    for _ in 0..(ReplayWindow::SIZE + 500) {
        last = Some(seal_envelope(&r.alice, &mut r.alice_chain, text(b"x")).expect("seal"));
    }
    let last = last.expect("sealed");
    open_envelope(&last, &alice, &mut r.bob_follows_alice).expect("open");
    // The first message comes last (it was sent again after a restart):
    // its key is still held, so it opens, once.
    assert_eq!(
        open_envelope(&late, &alice, &mut r.bob_follows_alice).expect("open"),
        b"late"
    );
    assert!(open_envelope(&late, &alice, &mut r.bob_follows_alice).is_err());
}

#[test]
fn a_chain_followed_further_on_descends_from_its_earlier_keys_only() {
    let mut r = room(22);
    let alice = r.alice.public();
    for i in 0..40u8 {
        let envelope = seal_envelope(&r.alice, &mut r.alice_chain, text(&[i])).expect("seal");
        open_envelope(&envelope, &alice, &mut r.bob_follows_alice).expect("open");
    }
    // Bob is at position 40; Alice hands out her origin (position 0) again.
    assert!(r.bob_follows_alice.descends_from(&r.alice_start, 1000));
    assert!(
        !r.bob_follows_alice.descends_from(&r.alice_start, 39),
        "bounded"
    );
    // Our own position is; a later one is not (that is `continues_to`).
    assert!(
        r.bob_follows_alice
            .descends_from(&r.alice_chain.distribution(), 1000)
    );
    seal_envelope(&r.alice, &mut r.alice_chain, text(b"unseen")).expect("seal");
    assert!(
        !r.bob_follows_alice
            .descends_from(&r.alice_chain.distribution(), 1000)
    );
    // Another chain under the same id (a sender that lost its state).
    let mut rng = StdRng::seed_from_u64(99);
    let other = SenderChain::new(&mut rng, r.alice_start.chain).distribution();
    assert!(!r.bob_follows_alice.descends_from(&other, 1000));
}

#[test]
fn snapshots_refuse_the_wrong_role() {
    let r = room(14);
    let sending = r.alice_chain.snapshot();
    let receiving = r.bob_follows_alice.snapshot(7);
    assert_eq!(receiving.start_seq, 7);
    assert_eq!(
        ReceiverChain::from_snapshot(&sending).err(),
        Some(CryptoError::BadSnapshot)
    );
    assert_eq!(
        SenderChain::from_snapshot(&receiving).err(),
        Some(CryptoError::BadSnapshot)
    );
}

#[test]
fn snapshot_debug_prints_no_secrets() {
    let mut r = room(15);
    let alice = r.alice.public();
    let envelopes: Vec<Envelope> = (0..3)
        .map(|_| seal_envelope(&r.alice, &mut r.alice_chain, text(b"x")).expect("seal"))
        .collect();
    open_envelope(&envelopes[2], &alice, &mut r.bob_follows_alice).expect("open");
    let snapshot = r.bob_follows_alice.snapshot(0);
    let printed = format!("{snapshot:?}");
    assert!(printed.contains("SecretKey(..)"), "{printed}");
    assert!(printed.contains("skipped: 2"), "{printed}");
    let key_bytes = format!("{:?}", snapshot.chain_key.as_bytes());
    assert!(!printed.contains(&key_bytes[1..20]), "{printed}");
}

#[test]
fn full_snapshot_fits_and_oversized_counts_are_refused() {
    let mut r = room(16);
    let alice = r.alice.public();
    // Two jumps of MAX_SKIP - 1 fill the skipped keys to the bound.
    let mut to_open = Vec::new();
    for seq in 0..(2 * MAX_SKIP) {
        let envelope = seal_envelope(&r.alice, &mut r.alice_chain, text(b"x")).expect("seal");
        if seq == MAX_SKIP - 1 || seq == 2 * MAX_SKIP - 1 {
            to_open.push(envelope);
        }
    }
    for envelope in &to_open {
        open_envelope(envelope, &alice, &mut r.bob_follows_alice).expect("open");
    }
    let mut snapshot = r.bob_follows_alice.snapshot(0);
    assert_eq!(snapshot.skipped_len() as u64, MAX_SKIP);
    // The largest: with the origin digest of version 2.
    snapshot.origin = Some([7; 32]);
    let bytes = snapshot.encode();
    assert_eq!(bytes.len(), MAX_SNAPSHOT_LEN);
    through_bytes(&snapshot);

    // A count above MAX_SKIP is refused before anything is read or allocated.
    let empty = ReceiverChain::from_distribution(&r.alice_start).snapshot(0);
    let mut bytes = empty.encode().to_vec();
    let count_at = bytes.len() - 2;
    bytes[count_at..].copy_from_slice(&(MAX_SKIP as u16 + 1).to_le_bytes());
    assert_eq!(
        ChainSnapshot::decode(&bytes),
        Err(SnapshotError::TooManySkipped(MAX_SKIP as usize + 1))
    );
    assert_eq!(
        ChainSnapshot::decode(&vec![1; MAX_SNAPSHOT_LEN + 1]),
        Err(SnapshotError::TooLarge(MAX_SNAPSHOT_LEN + 1))
    );
    let mut trailing = empty.encode().to_vec();
    trailing.push(0);
    assert_eq!(
        ChainSnapshot::decode(&trailing),
        Err(SnapshotError::TrailingBytes(1))
    );
    let mut version = empty.encode().to_vec();
    version[0] = 3;
    assert_eq!(
        ChainSnapshot::decode(&version),
        Err(SnapshotError::UnknownVersion(3))
    );
}

/// A receiving snapshot with skipped keys and a marked window, to mutate.
fn sample_snapshot_bytes() -> Vec<u8> {
    let mut r = room(17);
    let alice = r.alice.public();
    let envelopes: Vec<Envelope> = (0..6)
        .map(|_| seal_envelope(&r.alice, &mut r.alice_chain, text(b"x")).expect("seal"))
        .collect();
    for seq in [1usize, 4] {
        open_envelope(&envelopes[seq], &alice, &mut r.bob_follows_alice).expect("open");
    }
    r.bob_follows_alice.snapshot(0).encode().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn snapshot_decode_never_panics_on_random_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..1200),
        prefix in 0usize..3,
    ) {
        // Sometimes with a valid version and role, to get past the first checks.
        let mut input = vec![1u8, 1][..prefix.min(2)].to_vec();
        input.extend_from_slice(&bytes);
        if let Ok(snapshot) = ChainSnapshot::decode(&input) {
            prop_assert_eq!(&snapshot.encode()[..], &input[..]);
        }
    }

    #[test]
    fn mutated_snapshots_never_panic_and_decode_canonically(
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        cut in any::<prop::sample::Index>(),
        mode in 0u8..3,
    ) {
        let mut bytes = sample_snapshot_bytes();
        match mode {
            0 => {
                let at = index.index(bytes.len());
                bytes[at] ^= mask;
            }
            1 => bytes.truncate(cut.index(bytes.len())),
            _ => bytes.push(mask),
        }
        if let Ok(snapshot) = ChainSnapshot::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes and restores
            // (or is refused) without panicking.
            prop_assert_eq!(&snapshot.encode()[..], &bytes[..]);
            let _ = ReceiverChain::from_snapshot(&snapshot);
            let _ = SenderChain::from_snapshot(&snapshot);
        }
    }
}

/// A request sealed to an identity (a registry lookup) opens only with
/// that identity's key, unmodified, and its answer only under the key the
/// sealer kept; the ephemeral key cannot be swapped.
#[test]
fn sealed_requests_open_only_for_their_recipient() {
    let mut rng = StdRng::seed_from_u64(77);
    let registry = Identity::generate(&mut rng);
    let other = Identity::generate(&mut rng);
    let (ephemeral, sealed, key) =
        seal_request(&registry.public(), [9; 32], b"aad", b"who is alice").expect("seals");
    let (plaintext, their_key) = registry
        .open_request(&ephemeral, b"aad", &sealed)
        .expect("opens");
    assert_eq!(plaintext, b"who is alice");
    assert!(other.open_request(&ephemeral, b"aad", &sealed).is_err());
    assert!(
        registry
            .open_request(&ephemeral, b"other", &sealed)
            .is_err()
    );
    let mut flipped = sealed.clone();
    flipped[0] ^= 1;
    assert!(registry.open_request(&ephemeral, b"aad", &flipped).is_err());
    let (other_ephemeral, _, _) =
        seal_request(&registry.public(), [8; 32], b"aad", b"x").expect("seals");
    assert!(
        registry
            .open_request(&other_ephemeral, b"aad", &sealed)
            .is_err()
    );
    // The answer: sealed by the registry, opened by the asker only.
    let answer = seal_answer(&their_key, b"a", b"at 10.0.0.2").expect("seals");
    assert_eq!(
        open_sealed_answer(&key, b"a", &answer).expect("opens"),
        b"at 10.0.0.2"
    );
    let (_, _, stranger_key) =
        seal_request(&registry.public(), [7; 32], b"aad", b"x").expect("seals");
    assert!(open_sealed_answer(&stranger_key, b"a", &answer).is_err());
    // A low-order ephemeral key is refused before any decryption.
    assert!(registry.open_request(&[0; 32], b"aad", &sealed).is_err());
}

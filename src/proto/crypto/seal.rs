//! Sealing room messages on their chains and opening them: one by one or
//! signed in batches, from a followed chain or from a chain's origin.

use ed25519_dalek::{Signature, VerifyingKey};

use super::aead::{aead_open, aead_seal};
use super::chain::{ReceiverChain, SenderChain, SenderKeyDistribution, ratchet_step};
use super::envelope::{
    BatchProof, ENVELOPE_BATCH_SIG_DOMAIN, ENVELOPE_VERSION, Envelope, EnvelopeHeader,
    MAX_ENVELOPE_PLAINTEXT, MAX_SIGNED_BATCH, envelope_aad, leaf_hash, node_hash,
};
use super::error::CryptoError;
use super::identity::{Identity, PublicIdentity};

/// What the sender fills in; the chain supplies room, epoch and seq.
#[derive(Clone, Copy, Debug)]
pub struct OutgoingMessage<'a> {
    pub kind: u8,
    pub timestamp: u64,
    pub plaintext: &'a [u8],
}

/// A message sealed on its chain, waiting for the signature of its batch
/// ([`sign_batch`]).
#[derive(Clone, Debug)]
pub struct UnsignedEnvelope {
    header: EnvelopeHeader,
    ciphertext: Vec<u8>,
}

impl UnsignedEnvelope {
    /// Its cleartext header (room, chain position, timestamp).
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }
}

/// Seals the next message on `chain`; [`sign_batch`] signs it, alone or
/// with others.
pub fn seal_unsigned(
    chain: &mut SenderChain,
    message: OutgoingMessage<'_>,
) -> Result<UnsignedEnvelope, CryptoError> {
    if message.plaintext.len() > MAX_ENVELOPE_PLAINTEXT {
        return Err(CryptoError::TooLarge);
    }
    let (seq, message_key) = chain.advance()?;
    let header = EnvelopeHeader {
        room: chain.chain.room,
        epoch: chain.chain.epoch,
        sender: chain.chain.sender,
        seq,
        kind: message.kind,
        timestamp: message.timestamp,
    };
    let ciphertext = aead_seal(
        message_key.key.as_bytes(),
        &message_key.nonce,
        &envelope_aad(&header.emit(ENVELOPE_VERSION)),
        message.plaintext,
    )?;
    Ok(UnsignedEnvelope { header, ciphertext })
}

/// Signs sealed messages with one signature per [`MAX_SIGNED_BATCH`]: the
/// signature covers the root of a hash tree over them, and each envelope
/// carries the sibling hashes from its leaf to that root. Returns the
/// envelopes in the order given.
pub fn sign_batch(identity: &Identity, batch: Vec<UnsignedEnvelope>) -> Vec<Envelope> {
    let mut out = Vec::with_capacity(batch.len());
    let mut batch = batch.into_iter().peekable();
    while batch.peek().is_some() {
        let chunk: Vec<UnsignedEnvelope> = batch.by_ref().take(MAX_SIGNED_BATCH).collect();
        debug_assert!(chunk.iter().all(|u| u.header.sender == identity.peer_id()));
        // levels[0] holds the leaves; a node without a sibling moves up
        // unchanged, so no level is deeper than log2 of the chunk.
        let mut levels: Vec<Vec<[u8; 32]>> = vec![
            chunk
                .iter()
                .map(|u| leaf_hash(&u.header.emit(ENVELOPE_VERSION), &u.ciphertext))
                .collect(),
        ];
        while let Some(level) = levels.last().filter(|level| level.len() > 1) {
            let up = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    // The odd one out.
                    [alone, ..] => *alone,
                    [] => [0; 32],
                })
                .collect();
            levels.push(up);
        }
        let root = levels.last().and_then(|top| top.first()).copied();
        let Some(root) = root else { continue };
        let signature = identity.sign(ENVELOPE_BATCH_SIG_DOMAIN, &root).to_bytes();
        for (index, unsigned) in chunk.into_iter().enumerate() {
            let mut proof = BatchProof::default();
            let mut position = index;
            for level in &levels[..levels.len() - 1] {
                let sibling = position ^ 1;
                if let Some(hash) = level.get(sibling) {
                    if sibling < position {
                        proof.left |= 1 << proof.siblings.len();
                    }
                    proof.siblings.push(*hash);
                }
                position /= 2;
            }
            out.push(Envelope {
                header: unsigned.header,
                signature,
                proof: Some(proof),
                ciphertext: unsigned.ciphertext,
            });
        }
    }
    out
}

/// Seals and signs the next message on `chain` (a batch of one).
pub fn seal_envelope(
    identity: &Identity,
    chain: &mut SenderChain,
    message: OutgoingMessage<'_>,
) -> Result<Envelope, CryptoError> {
    debug_assert_eq!(chain.chain.sender, identity.peer_id());
    let unsigned = seal_unsigned(chain, message)?;
    sign_batch(identity, vec![unsigned])
        .pop()
        .ok_or(CryptoError::Unauthentic)
}

/// Verifies, decrypts and replay-checks a room message from `sender`,
/// advancing `chain` only if every check passed.
pub fn open_envelope(
    envelope: &Envelope,
    sender: &PublicIdentity,
    chain: &mut ReceiverChain,
) -> Result<Vec<u8>, CryptoError> {
    envelope.verify_signature(sender)?;
    open_verified_envelope(envelope, chain)
}

/// Decrypts and replay-checks an envelope whose signature the caller already
/// verified (for example in a batch with [`verify_envelopes_batch`]).
pub fn open_verified_envelope(
    envelope: &Envelope,
    chain: &mut ReceiverChain,
) -> Result<Vec<u8>, CryptoError> {
    if envelope.header.chain() != chain.chain {
        return Err(CryptoError::WrongChain);
    }
    let lookup = chain.peek(envelope.header.seq)?;
    let message_key = lookup.message_key();
    let plaintext = aead_open(
        message_key.key.as_bytes(),
        &message_key.nonce,
        &envelope_aad(&envelope.header.emit(envelope.version())),
        &envelope.ciphertext,
    )?;
    chain.commit(envelope.header.seq, lookup);
    Ok(plaintext)
}

/// Most ratchet steps [`open_envelope_from_origin`] takes from a chain's
/// origin to a message (about 20 ms of blake3 at the limit).
pub const MAX_ORIGIN_STEPS: u64 = 1 << 18;

/// Opens an envelope of any position of a chain from the chain's origin
/// (its first distribution), without a [`ReceiverChain`]'s state: how a
/// member opens an old envelope another member forwarded after it missed it.
/// No replay check: the caller deduplicates by envelope id.
pub fn open_envelope_from_origin(
    envelope: &Envelope,
    sender: &PublicIdentity,
    origin: &SenderKeyDistribution,
) -> Result<Vec<u8>, CryptoError> {
    if envelope.header.chain() != origin.chain {
        return Err(CryptoError::WrongChain);
    }
    let steps = envelope
        .header
        .seq
        .checked_sub(origin.start_seq)
        .ok_or(CryptoError::TooOld)?;
    if steps >= MAX_ORIGIN_STEPS {
        return Err(CryptoError::TooFarAhead);
    }
    envelope.verify_signature(sender)?;
    let mut chain_key = origin.chain_key.clone();
    for _ in 0..steps {
        chain_key = ratchet_step(&chain_key).1;
    }
    let (message_key, _) = ratchet_step(&chain_key);
    aead_open(
        message_key.key.as_bytes(),
        &message_key.nonce,
        &envelope_aad(&envelope.header.emit(envelope.version())),
        &envelope.ciphertext,
    )
}

/// Verifies many envelope signatures at once (about twice as fast per
/// signature as one by one). Envelopes of one signed batch share their
/// signature: pass one of them (see [`Envelope::signature_fingerprint`]). On failure, fall back to checking each one to
/// find the bad envelope(s).
pub fn verify_envelopes_batch(
    envelopes: &[(&Envelope, &PublicIdentity)],
) -> Result<(), CryptoError> {
    if envelopes
        .iter()
        .any(|(envelope, sender)| envelope.header.sender != sender.peer_id())
    {
        return Err(CryptoError::WrongPeer);
    }
    let messages: Vec<Vec<u8>> = envelopes
        .iter()
        .map(|(envelope, _)| envelope.signed_message())
        .collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = envelopes
        .iter()
        .map(|(envelope, _)| Signature::from_bytes(&envelope.signature))
        .collect();
    let keys: Vec<VerifyingKey> = envelopes.iter().map(|(_, sender)| sender.key).collect();
    ed25519_dalek::verify_batch(&message_refs, &signatures, &keys)
        .map_err(|_| CryptoError::BadSignature)
}

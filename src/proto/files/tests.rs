use proptest::prelude::*;

use super::*;

fn offer(size: u64) -> FileOffer {
    FileOffer {
        name: "report.pdf".into(),
        size,
        hash: FileHash([7; 32]),
        key: [9; 32],
        caption: Some("the draft".into()),
    }
}

#[test]
fn offer_round_trips() {
    let o = offer(100_000);
    assert_eq!(FileOffer::parse(&o.emit().unwrap()).unwrap(), o);
    let bare = FileOffer {
        caption: None,
        ..offer(0)
    };
    assert_eq!(FileOffer::parse(&bare.emit().unwrap()).unwrap(), bare);
    assert_eq!(bare.chunks(), 0);
}

#[test]
fn offer_refuses_bad_input() {
    let good = offer(10).emit().unwrap();
    for cut in 0..good.len() {
        assert!(FileOffer::parse(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(FileOffer::parse(&trailing), Err(FileError::Trailing));
    let mut version = good.clone();
    version[0] = 2;
    assert_eq!(FileOffer::parse(&version), Err(FileError::Version(2)));
    let mut huge = good.clone();
    huge[1..9].copy_from_slice(&(MAX_FILE_SIZE + 1).to_le_bytes());
    assert_eq!(
        FileOffer::parse(&huge),
        Err(FileError::TooLarge(MAX_FILE_SIZE + 1))
    );
    assert!(offer(MAX_FILE_SIZE + 1).emit().is_err());
    assert_eq!(
        FileOffer::parse(&vec![1; MAX_OFFER_LEN + 1]),
        Err(FileError::TooLong)
    );
}

#[test]
fn offer_refuses_path_names() {
    for name in [
        "../../etc/passwd",
        "a/b",
        "a\\b",
        "..",
        ".",
        "",
        "x\0y",
        ".hidden",
    ] {
        let mut o = offer(1);
        o.name = name.into();
        assert!(o.emit().is_err(), "{name:?} was emitted");
        // Written by hand, as a hostile sender would.
        let mut bytes = vec![OFFER_VERSION];
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        bytes.push(name.len() as u8);
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        assert_eq!(
            FileOffer::parse(&bytes),
            Err(FileError::BadName),
            "{name:?}"
        );
    }
}

#[test]
fn names_are_sanitised() {
    assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
    assert_eq!(sanitize_name("C:\\Users\\me\\a.txt"), "a.txt");
    assert_eq!(sanitize_name("/tmp/x/"), "x");
    assert_eq!(sanitize_name(".."), "file");
    assert_eq!(sanitize_name("..."), "file");
    assert_eq!(sanitize_name(".bashrc"), "bashrc");
    assert_eq!(sanitize_name("a\nb"), "a_b");
    assert_eq!(sanitize_name(""), "file");
    let long = "é".repeat(300);
    let cut = sanitize_name(&long);
    assert!(cut.len() <= MAX_NAME && cut.chars().all(|c| c == 'é'));
}

#[test]
fn chunks_seal_and_open() {
    let o = offer(CHUNK_SIZE as u64 + 10);
    assert_eq!(o.chunks(), 2);
    let first = vec![1u8; CHUNK_SIZE];
    let last = vec![2u8; 10];
    let s0 = seal_chunk(&o, 0, &first).unwrap();
    let s1 = seal_chunk(&o, 1, &last).unwrap();
    assert_eq!(open_chunk(&o, 0, &s0).unwrap(), first);
    assert_eq!(open_chunk(&o, 1, &s1).unwrap(), last);
    // Moved to another index, another file, truncated, flipped, too long.
    assert!(open_chunk(&o, 1, &s0).is_err());
    assert_eq!(open_chunk(&o, 2, &s1), Err(FileError::BadIndex(2)));
    let other = FileOffer {
        hash: FileHash([8; 32]),
        ..o.clone()
    };
    assert_eq!(open_chunk(&other, 0, &s0), Err(FileError::Unauthentic));
    assert_eq!(
        open_chunk(&o, 0, &s0[..s0.len() - 1]),
        Err(FileError::Truncated)
    );
    let mut flipped = s0.clone();
    flipped[100] ^= 1;
    assert_eq!(open_chunk(&o, 0, &flipped), Err(FileError::Unauthentic));
    let mut long = s1.clone();
    long.push(0);
    assert_eq!(open_chunk(&o, 1, &long), Err(FileError::TooLong));
    // Wrong plaintext length is refused on sealing too.
    assert!(seal_chunk(&o, 1, &first).is_err());
}

#[test]
fn messages_round_trip_and_refuse_garbage() {
    let offer_id = MessageId([3; 32]);
    let all = [
        FileMessage::Get {
            offer: offer_id,
            first: 5,
            count: 8,
        },
        FileMessage::Chunk {
            offer: offer_id,
            index: 9,
            sealed: vec![4; 100],
        },
        FileMessage::Unavailable { offer: offer_id },
    ];
    for m in all {
        let bytes = m.emit();
        assert_eq!(FileMessage::parse(&bytes).unwrap(), m);
        // Shorter than the fixed fields (or, for a chunk, than a tag).
        let fixed = match m {
            FileMessage::Get { .. } => bytes.len(),
            FileMessage::Chunk { .. } => 38 + CHUNK_TAG,
            FileMessage::Unavailable { .. } => bytes.len(),
        };
        for cut in 0..fixed {
            assert!(
                FileMessage::parse(&bytes[..cut]).is_err(),
                "{m:?} cut at {cut}"
            );
        }
    }
    assert_eq!(
        FileMessage::parse(&vec![1; MAX_FILE_MESSAGE + 1]),
        Err(FileError::TooLong)
    );
    let mut bad_tag = FileMessage::Unavailable { offer: offer_id }.emit();
    bad_tag[1] = 77;
    assert_eq!(FileMessage::parse(&bad_tag), Err(FileError::Tag(77)));
}

proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = FileOffer::parse(&bytes);
        let _ = FileMessage::parse(&bytes);
        let o = offer(100_000);
        let _ = open_chunk(&o, 0, &bytes);
    }

    #[test]
    fn offers_round_trip(name in "[a-zA-Z0-9 ._-]{0,300}", size in 0..=MAX_FILE_SIZE,
                         caption in proptest::option::of("[^\u{0}]{1,200}"), key in any::<[u8; 32]>()) {
        let o = FileOffer { name: sanitize_name(&name), size, hash: FileHash(key), key, caption };
        let bytes = o.emit().unwrap();
        prop_assert!(bytes.len() <= MAX_OFFER_LEN);
        prop_assert_eq!(FileOffer::parse(&bytes).unwrap(), o);
    }

    #[test]
    fn sanitised_names_are_fixed_points(name in ".{0,400}") {
        let once = sanitize_name(&name);
        prop_assert_eq!(sanitize_name(&once), once.clone());
        prop_assert!(!once.contains('/') && !once.contains('\\') && !once.starts_with('.'));
        prop_assert!(!once.is_empty() && once.len() <= MAX_NAME);
    }

    #[test]
    fn one_bit_flip_breaks_a_chunk(bit in 0usize..(50 + CHUNK_TAG) * 8) {
        let o = offer(50);
        let mut sealed = seal_chunk(&o, 0, &[5u8; 50]).unwrap();
        sealed[bit / 8] ^= 1 << (bit % 8);
        prop_assert_eq!(open_chunk(&o, 0, &sealed), Err(FileError::Unauthentic));
    }
}

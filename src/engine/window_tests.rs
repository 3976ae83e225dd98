//! Tests of the rings: both forms (cells and dense rows) against a reference
//! sum, conversions, snapshots.

use super::*;
use proptest::prelude::*;

// Against a reference: the sum of everything added at buckets in
// (end-len, end] that the ring still holds, for every readable end.
proptest! {
    #[test]
    fn matches_reference(
        adds in proptest::collection::vec((0i64..80, 0u8..6, 1u64..4), 1..300),
        len in 1usize..8,
        slack in 0usize..4,
        dense in any::<bool>(),
    ) {
        let mut ring = Ring::new(len, slack, 0);
        let mut kept: Vec<(i64, u8, u64)> = Vec::new();
        let mut head = 0i64;
        let cap = (len + slack) as i64;
        for (b, f, v) in adds {
            head = head.max(b);
            if ring.add(b, f, v) == Add::Added {
                kept.push((b, f, v));
            } else {
                prop_assert!(b <= head - cap);
            }
            if dense {
                // A drained dense ring turns sparse at its next advance:
                // make it dense again, so both forms meet every case.
                ring.densify();
                prop_assert!(ring.is_dense());
                let back = Ring::restore(len, slack, &ring.snapshot()).expect("valid snapshot");
                for end in (head - slack as i64)..=(head + 2) {
                    prop_assert_eq!(back.read(end), ring.read(end), "restored at end {}", end);
                }
            }
            for end in (head - slack as i64)..=(head + len as i64 + 1) {
                let got = ring.read(end);
                let mut to = Counts([7; NF]);
                ring.read_to(end, &mut to);
                prop_assert_eq!(&to, &got, "read_to at end {}", end);
                for field in 0u8..6 {
                    let expect: u64 = kept.iter()
                        .filter(|(k, kf, _)| *kf == field && *k <= end && *k > end - len as i64 && *k > head - cap)
                        .map(|(_, _, v)| v)
                        .sum();
                    prop_assert_eq!(got.0[field as usize], expect, "end {} head {} field {}", end, head, field);
                }
            }
        }
    }
}

#[test]
fn busy_ring_turns_dense_and_back_when_it_drains() {
    let mut ring = Ring::new(5, 2, 0);
    let mut cold = Ring::new(5, 2, 0);
    for i in 0..5_000u64 {
        let (b, f) = ((i / 500) as i64, (i % NF as u64) as u8);
        ring.add(b, f, 1 + i % 3);
        cold.add(b, f, 1 + i % 3);
        cold.hot = None;
    }
    assert!(ring.is_dense(), "every counter in every bucket: dense");
    for end in ring.head() - 2..ring.head() + 7 {
        assert_eq!(ring.read(end), cold.read(end), "end {end}");
    }
    let mut other = Ring::new(5, 2, 0);
    ring.add_into(&mut other);
    assert_eq!(other.read(ring.head()), ring.read(ring.head()));
    // A few counters a bucket from now on: back to cells.
    for b in 10..20 {
        ring.add(b, 1, 1);
    }
    assert!(!ring.is_dense());
    assert_eq!(ring.read(19).0[1], 5);
    ring.advance_to(40);
    assert!(ring.is_empty());
}

#[test]
fn expires_and_empties() {
    let mut ring = Ring::new(3, 1, 0);
    ring.add(0, 1, 1);
    ring.add(1, 1, 1);
    assert_eq!(ring.read(1).0[1], 2);
    assert_eq!(ring.read(3).0[1], 1);
    assert_eq!(ring.read(4).0[1], 0);
    ring.advance_to(10);
    assert!(ring.is_empty());
    assert_eq!(ring.heap_bytes(), 0);
}

#[test]
fn snapshot_restores_equal_reads() {
    for n in [5u64, 400] {
        let mut ring = Ring::new(5, 2, 0);
        for i in 0..n {
            ring.add((i / 20) as i64, (i % 7) as u8, 1 + i % 3);
        }
        let back = Ring::restore(5, 2, &ring.snapshot()).expect("valid snapshot");
        assert_eq!(back.is_hot(), ring.is_hot());
        for end in ring.head() - 2..ring.head() + 7 {
            assert_eq!(back.read(end), ring.read(end), "end {end}");
        }
    }
    let bad = RingSnapshot { head: 10, cells: vec![(9, 0, 1), (3, 0, 1)] };
    assert!(Ring::restore(5, 2, &bad).is_none(), "unsorted and outside the ring");
}

#[test]
fn hot_ring_agrees_with_cold_sums() {
    let mut ring = Ring::new(5, 2, 0);
    for i in 0..400u64 {
        ring.add((i / 20) as i64, (i % 7) as u8, 1);
        // A late cell now and then.
        if i % 13 == 0 && i >= 20 {
            ring.add((i / 20) as i64 - 1, 3, 2);
        }
    }
    assert!(ring.hot.is_some());
    let mut cold = ring.clone();
    cold.hot = None;
    for end in ring.head() - 2..ring.head() + 7 {
        assert_eq!(ring.read(end), cold.read(end), "end {end}");
    }
}

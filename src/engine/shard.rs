//! Shards: the state of one partition number, so it can be checkpointed,
//! handed to another worker and restored there.
//!
//! Every topic is keyed by shop and co-partitioned, so partition `p` of every
//! topic carries the same shops: shard `p`. A shop belongs to the shard of the
//! source that first fed it; each shard has its own dedup memory. Category
//! and platform scopes are sums over shops, so they are not part of a shard:
//! importing a shard adds its shops into them, and dropping one rebuilds them
//! from the shops that stay (rebalances are rare; a rebuild reads every shop
//! once).
//!
//! A [`ShardSnapshot`] holds the shard's shops (rings as stored, with their
//! category by name) and dedup ids, plus the window layout it was taken
//! under: a snapshot taken under other windows is refused, not misread.

use serde::{Deserialize, Serialize};

use super::dedup::{Dedup, DedupSnapshot};
use super::scope::{ScopeSnapshot, ScopeState};
use super::{Engine, ShopState, SourceId};
use crate::event::Millis;

/// One shop in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopSnapshot {
    pub id: String,
    pub category: String,
    pub pending_until: Option<Millis>,
    pub scope: ScopeSnapshot,
}

/// Everything a shard holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSnapshot {
    pub shard: u32,
    /// (size, step) of every window, in ms: the layout the rings follow.
    pub windows: Vec<(i64, i64)>,
    pub shops: Vec<ShopSnapshot>,
    pub dedup: Option<DedupSnapshot>,
}

/// Why a snapshot cannot be imported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error(
        "the snapshot was taken with windows {taken:?} (size, step in ms) but the engine runs {now:?}; \
         it cannot be read under other windows: delete the checkpoints of this group to rebuild from the topics"
    )]
    Windows { taken: Vec<(i64, i64)>, now: Vec<(i64, i64)> },
    #[error("shop {0:?} in the snapshot has damaged windows")]
    Damaged(String),
}

impl Engine {
    fn window_layout(&self) -> Vec<(i64, i64)> {
        self.cfg.windows.iter().map(|w| (w.size_ms, w.step_ms)).collect()
    }

    /// Records that `source` is partition `shard` of its topic.
    pub fn set_source_shard(&mut self, source: SourceId, shard: u32) {
        let i = source.0 as usize;
        if self.source_shards.len() <= i {
            self.source_shards.resize(i + 1, 0);
        }
        self.source_shards[i] = shard;
    }

    pub(super) fn dedup_mut(&mut self, shard: u32) -> &mut Dedup {
        let i = shard as usize;
        if self.dedups.len() <= i {
            self.dedups.resize_with(i + 1, || None);
        }
        let (horizon, capacity) = (self.cfg.dedup_horizon_ms, self.cfg.dedup_capacity);
        self.dedups[i].get_or_insert_with(|| Dedup::new(horizon, capacity))
    }

    /// Shops held for `shard`.
    pub fn shard_shop_count(&self, shard: u32) -> usize {
        self.shops.values().filter(|s| s.shard == shard).count()
    }

    /// A copy of everything `shard` holds.
    pub fn export_shard(&self, shard: u32) -> ShardSnapshot {
        let shops = self
            .shops
            .iter()
            .filter(|(_, s)| s.shard == shard)
            .map(|(id, s)| ShopSnapshot {
                id: id.to_string(),
                category: self.category_name(s.category).to_string(),
                pending_until: s.pending_until,
                scope: s.scope.snapshot(&self.layout),
            })
            .collect();
        let dedup = self.dedups.get(shard as usize).and_then(|d| d.as_ref()).map(Dedup::snapshot);
        ShardSnapshot { shard, windows: self.window_layout(), shops, dedup }
    }

    /// Takes in a shard exported by [`Engine::export_shard`] (here or in
    /// another process): its shops join their categories and the platform.
    /// A shop already held is replaced. Nothing changes on error.
    pub fn import_shard(&mut self, snap: ShardSnapshot) -> Result<usize, SnapshotError> {
        let now = self.window_layout();
        if snap.windows != now {
            return Err(SnapshotError::Windows { taken: snap.windows, now });
        }
        let mut scopes = Vec::with_capacity(snap.shops.len());
        for shop in &snap.shops {
            let scope = ScopeState::restore(&self.layout, &shop.scope)
                .ok_or_else(|| SnapshotError::Damaged(shop.id.clone()))?;
            scopes.push(scope);
        }
        let n = snap.shops.len();
        let mut replaced = false;
        for (shop, scope) in snap.shops.into_iter().zip(scopes) {
            let category = self.cats.id(&self.layout, &shop.category, 0);
            scope.add_into(&self.layout, &mut self.cats.scopes[category as usize]);
            self.has_platform = true;
            let (mut pending_in, mut pending_until) = (0, None);
            let key: super::shops::Key = shop.id.into();
            if shop.pending_until.is_some() && self.tracked != 0 {
                // Every tracked window evaluates a restored shop once more.
                for (w, list) in self.pending.iter_mut().enumerate() {
                    if self.tracked & (1 << w) != 0 {
                        list.push(key.clone());
                    }
                }
                (pending_in, pending_until) = (self.tracked, shop.pending_until);
            }
            let state = ShopState { category, shard: snap.shard, scope, pending_until, pending_in };
            replaced |= self.shops.insert(key, state).is_some();
        }
        if replaced {
            // A replaced shop was counted in the aggregates twice.
            self.rebuild_aggregates();
        }
        if let Some(d) = snap.dedup {
            let i = snap.shard as usize;
            if self.dedups.len() <= i {
                self.dedups.resize_with(i + 1, || None);
            }
            self.dedups[i] = Some(Dedup::restore(self.cfg.dedup_horizon_ms, self.cfg.dedup_capacity, d));
        }
        Ok(n)
    }

    /// Forgets `shard` (its partitions went to another worker): its shops
    /// leave, and categories and the platform are rebuilt without them.
    /// Returns how many shops left.
    pub fn drop_shard(&mut self, shard: u32) -> usize {
        let before = self.shops.len();
        self.shops.retain(|_, s| s.shard != shard);
        if let Some(d) = self.dedups.get_mut(shard as usize) {
            *d = None;
        }
        let dropped = before - self.shops.len();
        if dropped > 0 {
            self.rebuild_aggregates();
        }
        dropped
    }

    /// Recomputes every category (and so the platform) as the sum of the shops held.
    fn rebuild_aggregates(&mut self) {
        let layout = &self.layout;
        for scope in &mut self.cats.scopes {
            *scope = ScopeState::new(layout, 0, true);
        }
        for shop in self.shops.values() {
            shop.scope.add_into(layout, &mut self.cats.scopes[shop.category as usize]);
        }
        self.has_platform = !self.shops.is_empty();
    }
}

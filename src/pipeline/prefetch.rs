//! Starting the fold's first lookups for encoded records before they are
//! decoded, in two steps a record apart, as the Kafka worker and
//! `peakguard bench` read: while one record decodes and folds, the next
//! one's shop-map control bytes and dedup groups load
//! ([`Pipeline::prefetch_next`]), and when its own turn comes its shop's
//! entry ([`Pipeline::prefetch_record`]). Over a million shops these
//! lookups miss the cache, and this is what the fold waits on (see
//! `Engine::prefetch`). Hints only: they change nothing, whatever the bytes.

use super::Pipeline;
use crate::codec::{self, IdSpans, SchemaStore};
use crate::engine::SourceId;

impl Pipeline {
    /// The first step for `bytes`, the record to be handled after the
    /// current one, read from `source`; returns where its ids lie, for
    /// [`Pipeline::prefetch_record`] not to read them again.
    #[inline]
    pub fn prefetch_next(&self, store: &SchemaStore, source: SourceId, bytes: &[u8]) -> Option<IdSpans> {
        let ids = codec::peek_id_spans(store, bytes)?;
        if let (Some(event_id), Some(shop_id)) = (bytes.get(ids.event_id.clone()), bytes.get(ids.shop_id.clone())) {
            self.engine.prefetch_early(source, shop_id, event_id);
        }
        Some(ids)
    }

    /// Before `bytes` from `source` decodes: its shop's entry, after
    /// [`Pipeline::prefetch_next`] gave `early`; both steps at once without.
    #[inline]
    pub fn prefetch_record(&self, store: &SchemaStore, source: SourceId, bytes: &[u8], early: Option<IdSpans>) {
        match early.and_then(|ids| bytes.get(ids.shop_id)) {
            Some(shop_id) => self.engine.prefetch_shop(shop_id),
            None => {
                if let Some((event_id, shop_id)) = codec::peek_ids(store, bytes) {
                    self.engine.prefetch(source, shop_id, event_id);
                }
            }
        }
    }
}

package dev.flotilla.images;

import dev.flotilla.images.blob.BlobStore;
import dev.flotilla.images.unpack.LayerUnpacker;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Decides which images leave the node and removes what they leave behind. The caller holds the
 * store's exclusive lock (no pull, import or unpack in flight) and the catalog's monitor.
 */
final class ImageCollector {
  private static final Logger log = LoggerFactory.getLogger(ImageCollector.class);

  private final Catalog catalog;
  private final BlobStore blobs;
  private final LayerUnpacker unpacker;
  private final long cacheMaxBytes;

  ImageCollector(Catalog catalog, BlobStore blobs, LayerUnpacker unpacker, long cacheMaxBytes) {
    this.catalog = catalog;
    this.blobs = blobs;
    this.unpacker = unpacker;
    this.cacheMaxBytes = cacheMaxBytes;
  }

  /**
   * Drops images nobody claims, then least-recently-used ones while over {@code cache-max}; never
   * one in {@code busy} or used since {@code recentMillis}. Then removes every blob and layer
   * directory no remaining image references (leftovers of failed pulls and imports included).
   */
  void collect(Set<Digest> busy, long recentMillis) {
    for (Catalog.Entry e : new ArrayList<>(catalog.images.values())) {
      if (e.owners.isEmpty() && !busy.contains(e.manifest)) {
        log.info("image {} is claimed by no one: removed", e.manifest.shortHex());
        catalog.remove(e.manifest);
      }
    }
    long total = catalog.images.values().stream().mapToLong(x -> x.size).sum();
    List<Catalog.Entry> lru = catalog.images.values().stream()
        .filter(e -> !busy.contains(e.manifest) && e.lastUsed < recentMillis)
        .sorted(Comparator.comparingLong(e -> e.lastUsed))
        .toList();
    for (Catalog.Entry e : lru) {
      if (total <= cacheMaxBytes) {
        break;
      }
      log.info("image {} evicted ({} bytes; cache over {} bytes)", e.manifest.shortHex(), e.size, cacheMaxBytes);
      catalog.remove(e.manifest);
      total -= e.size;
    }
    catalog.save();
    Set<Digest> referenced = new HashSet<>();
    for (Catalog.Entry e : catalog.images.values()) {
      referenced.add(e.manifest);
      referenced.add(e.config);
      referenced.addAll(e.layers);
    }
    for (Digest d : blobs.list()) {
      if (!referenced.contains(d)) {
        blobs.delete(d);
      }
    }
    for (Digest d : unpacker.list()) {
      if (!referenced.contains(d)) {
        unpacker.delete(d);
      }
    }
  }
}

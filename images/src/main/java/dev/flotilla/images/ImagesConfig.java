package dev.flotilla.images;

import dev.flotilla.images.registry.RegistryConfig;
import dev.flotilla.images.unpack.LayerUnpacker;
import java.nio.file.Path;
import java.time.Duration;

/**
 * The node's image settings (keys under {@code flotilla.images} in the node's config).
 *
 * @param root where blobs, unpacked layers and the catalog live ({@code root}); node-only, 0700
 * @param cacheMaxBytes blob bytes kept before least-recently-used images not in use are evicted ({@code cache-max})
 * @param maxLayerBytes file bytes one layer may unpack to ({@code max-layer-bytes})
 * @param maxLayerEntries tar entries one layer may hold ({@code max-layer-entries})
 * @param evictionGrace an image used (pulled, imported, resolved) this recently is never evicted,
 *     so an image is not taken away between its pull and the sandbox that pins it ({@code eviction-grace})
 * @param registry transport, credentials and bounds of pulls
 */
public record ImagesConfig(
    Path root, long cacheMaxBytes, long maxLayerBytes, int maxLayerEntries, Duration evictionGrace, RegistryConfig registry) {

  public static final long DEFAULT_CACHE_MAX = 20L << 30;
  public static final Duration DEFAULT_EVICTION_GRACE = Duration.ofMinutes(10);

  public static ImagesConfig defaults(Path root) {
    return new ImagesConfig(root, DEFAULT_CACHE_MAX, LayerUnpacker.DEFAULT_MAX_LAYER_BYTES, LayerUnpacker.DEFAULT_MAX_ENTRIES,
        DEFAULT_EVICTION_GRACE, RegistryConfig.defaults());
  }

  public ImagesConfig withRegistry(RegistryConfig r) {
    return new ImagesConfig(root, cacheMaxBytes, maxLayerBytes, maxLayerEntries, evictionGrace, r);
  }

  public ImagesConfig withCacheMax(long bytes, Duration grace) {
    return new ImagesConfig(root, bytes, maxLayerBytes, maxLayerEntries, grace, registry);
  }

  public ImagesConfig withLayerLimits(long bytes, int entries) {
    return new ImagesConfig(root, cacheMaxBytes, bytes, entries, evictionGrace, registry);
  }
}

package dev.flotilla.images;

import java.util.List;
import java.util.Optional;

/**
 * An image present on this node: everything a driver needs to build a root file system and the
 * exec defaults. The manifest digest is its identity (pin it at create, so a restart anywhere runs
 * the same bytes).
 *
 * @param reference the name it was resolved by (empty when resolved by digest alone)
 * @param manifestDigest the single-platform manifest's digest
 * @param configDigest the config blob's digest
 * @param config the parsed config
 * @param layers layer blob digests, bottom layer first (as in the manifest)
 * @param totalSize manifest + config + layer blob bytes (compressed, as stored)
 */
public record ResolvedImage(
    Optional<ImageReference> reference,
    Digest manifestDigest,
    Digest configDigest,
    ImageConfig config,
    List<Digest> layers,
    long totalSize) {

  public ResolvedImage {
    layers = List.copyOf(layers);
  }
}

package dev.flotilla.images.unpack;

import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.blob.BlobStore;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Unpacks each layer blob once per node into {@code <root>/layers/<layer-hex>/}, ready to be an
 * overlayfs lower directory. The unpack goes to a temp directory beside it and is renamed into
 * place, so a layer directory that exists is complete; concurrent requests for one layer share a
 * single unpack. The layer's uncompressed bytes are checked against the config's diff_id.
 */
public final class LayerUnpacker {
  private static final Logger log = LoggerFactory.getLogger(LayerUnpacker.class);

  public static final long DEFAULT_MAX_LAYER_BYTES = 8L << 30;
  public static final int DEFAULT_MAX_ENTRIES = 1_000_000;
  private static final String TEMP_PREFIX = ".tmp-";
  /** Headers, padding and end-of-archive records on top of file content, per entry. */
  private static final long TAR_OVERHEAD_PER_ENTRY = 2048;

  private final Path dir;
  private final BlobStore blobs;
  private final long maxLayerBytes;
  private final int maxEntries;
  private final ConcurrentHashMap<Digest, CompletableFuture<Path>> inFlight = new ConcurrentHashMap<>();
  private final AtomicLong unpacks = new AtomicLong();

  public LayerUnpacker(Path root, BlobStore blobs, long maxLayerBytes, int maxEntries) {
    this.dir = root.resolve("layers");
    this.blobs = blobs;
    this.maxLayerBytes = maxLayerBytes;
    this.maxEntries = maxEntries;
    try {
      BlobStore.createPrivateDirs(dir);
      removeTemps();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot prepare " + dir, e);
    }
  }

  public Path layerDir(Digest layer) {
    return dir.resolve(layer.hex());
  }

  public boolean isUnpacked(Digest layer) {
    return Files.isDirectory(layerDir(layer), LinkOption.NOFOLLOW_LINKS);
  }

  /** How many unpacks this instance has run (not reused ones): evidence for tests and metrics. */
  public long unpackCount() {
    return unpacks.get();
  }

  /**
   * The unpacked directory of {@code layer}, unpacking it first if needed.
   *
   * @param diffId the config's diff_id for this layer, or null to skip that check
   */
  public Path unpack(Digest layer, Digest diffId) {
    Path dst = layerDir(layer);
    if (isUnpacked(layer)) {
      return dst;
    }
    CompletableFuture<Path> mine = new CompletableFuture<>();
    CompletableFuture<Path> running = inFlight.putIfAbsent(layer, mine);
    if (running == null) {
      try {
        // Another unpack may have finished (renamed, then left inFlight) between the check and here.
        if (!isUnpacked(layer)) {
          unpackNow(layer, diffId, dst);
        }
        mine.complete(dst);
      } catch (RuntimeException e) {
        mine.completeExceptionally(e);
      } finally {
        inFlight.remove(layer, mine);
      }
      running = mine;
    }
    try {
      return running.join();
    } catch (CompletionException e) {
      throw e.getCause() instanceof RuntimeException r ? r : new ImageException("unpack failed", e.getCause());
    }
  }

  private void unpackNow(Digest layer, Digest diffId, Path dst) {
    Path tmp = null;
    try {
      tmp = Files.createTempDirectory(dir, TEMP_PREFIX + layer.shortHex() + "-");
      // The layer's root is the sandbox's "/": readable by all unless the tar's "./" entry says otherwise.
      Files.setAttribute(tmp, "unix:mode", 0755);
      SafeTarExtractor x = new SafeTarExtractor(tmp, maxLayerBytes, maxEntries, layer.shortHex());
      Digest actual;
      try (InputStream plain = decompressed(layer)) {
        HashingInputStream hashed = new HashingInputStream(plain, maxLayerBytes + maxEntries * TAR_OVERHEAD_PER_ENTRY, layer);
        x.extract(hashed);
        actual = hashed.drainAndDigest();
      }
      if (diffId != null && !diffId.equals(actual)) {
        throw new ImageException("layer " + layer + ": uncompressed content has digest " + actual
            + " but the image config's diff_id is " + diffId + "; refused");
      }
      try {
        Files.move(tmp, dst, StandardCopyOption.ATOMIC_MOVE);
        tmp = null;
      } catch (IOException e) {
        if (!isUnpacked(layer)) {
          throw e;
        }
        // another process of this node unpacked it meanwhile: use that one
      }
      unpacks.incrementAndGet();
      log.info("layer {} unpacked ({} bytes of files)", layer.shortHex(), x.bytesWritten());
    } catch (IOException e) {
      throw new ImageException("cannot unpack layer " + layer + ": " + e.getMessage(), e);
    } finally {
      if (tmp != null) {
        try {
          SafeTarExtractor.deleteTree(tmp);
        } catch (IOException e) {
          log.warn("cannot remove {}: {}", tmp, e.toString());
        }
      }
    }
  }

  /** The layer as a plain tar: compression is recognised by its magic bytes, not by what the manifest claims. */
  private InputStream decompressed(Digest layer) throws IOException {
    InputStream raw = new BufferedInputStream(blobs.open(layer), 64 * 1024);
    raw.mark(4);
    byte[] magic = raw.readNBytes(4);
    raw.reset();
    if (magic.length >= 2 && (magic[0] & 0xff) == 0x1f && (magic[1] & 0xff) == 0x8b) {
      return GzipCompressorInputStream.builder().setInputStream(raw).setDecompressConcatenated(true).get();
    }
    if (magic.length == 4 && (magic[0] & 0xff) == 0x28 && (magic[1] & 0xff) == 0xb5
        && (magic[2] & 0xff) == 0x2f && (magic[3] & 0xff) == 0xfd) {
      raw.close();
      throw new ImageException("layer " + layer + ": zstd layers are not supported yet");
    }
    return raw;
  }

  public void delete(Digest layer) {
    try {
      SafeTarExtractor.deleteTree(layerDir(layer));
    } catch (IOException e) {
      throw new ImageException("cannot delete layer directory of " + layer + ": " + e.getMessage(), e);
    }
  }

  /** Layers unpacked on this node. */
  public Set<Digest> list() {
    Set<Digest> out = new HashSet<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
      for (Path p : ds) {
        String name = p.getFileName().toString();
        if (Digest.isDigest(Digest.ALGORITHM + ":" + name)) {
          out.add(new Digest(name));
        }
      }
    } catch (IOException e) {
      throw new ImageException("cannot list " + dir + ": " + e.getMessage(), e);
    }
    return out;
  }

  private void removeTemps() throws IOException {
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, TEMP_PREFIX + "*")) {
      for (Path p : ds) {
        SafeTarExtractor.deleteTree(p);
      }
    }
  }
}

package dev.flotilla.images.blob;

import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.util.HashSet;
import java.util.Set;

/**
 * Content-addressed blobs under {@code <root>/blobs/sha256/<hex>}. A blob is written to a temp
 * file in the same directory while it is hashed, checked against the digest (and size) it was
 * announced with, and only then renamed into place: a reader never sees a partial blob and a
 * blob that does not match is never cached. Concurrent writers of the same content are harmless
 * (each renames a complete, verified copy).
 */
public final class BlobStore {

  static final String TEMP_PREFIX = ".tmp-";
  private final Path dir;

  public BlobStore(Path root) {
    this.dir = root.resolve("blobs").resolve(Digest.ALGORITHM);
    try {
      createPrivateDirs(root);
      createPrivateDirs(root.resolve("blobs"));
      createPrivateDirs(dir);
      removeTemps();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create the blob store in " + root, e);
    }
  }

  /** Creates a 0700 directory (or tightens an existing one): blobs and layers are node-only state. */
  public static void createPrivateDirs(Path d) throws IOException {
    if (!Files.isDirectory(d, LinkOption.NOFOLLOW_LINKS)) {
      Files.createDirectories(d);
    }
    Files.setPosixFilePermissions(d, PosixFilePermissions.fromString("rwx------"));
  }

  public Path path(Digest d) {
    return dir.resolve(d.hex());
  }

  public boolean contains(Digest d) {
    return Files.isRegularFile(path(d), LinkOption.NOFOLLOW_LINKS);
  }

  public long size(Digest d) {
    try {
      return Files.size(path(d));
    } catch (IOException e) {
      throw notFound(d);
    }
  }

  /**
   * Stores {@code in}, verifying it against {@code expected} (null: whatever it hashes to) and
   * {@code expectedSize} (negative: unknown). Reads at most one byte past a known size, so a
   * lying source cannot fill the disk.
   *
   * @return the digest the content has
   */
  public Digest put(InputStream in, Digest expected, long expectedSize) {
    Path tmp = null;
    try {
      tmp = Files.createTempFile(dir, TEMP_PREFIX, "");
      MessageDigest hasher = Digest.newHasher();
      long n = 0;
      byte[] buf = new byte[64 * 1024];
      try (OutputStream out = Files.newOutputStream(tmp)) {
        int r;
        while ((r = in.read(buf)) > 0) {
          n += r;
          if (expectedSize >= 0 && n > expectedSize) {
            throw new ImageException("blob " + (expected == null ? "" : expected + " ")
                + "is larger than the expected " + expectedSize + " bytes; refused");
          }
          hasher.update(buf, 0, r);
          out.write(buf, 0, r);
        }
      }
      Digest actual = Digest.fromHasher(hasher);
      if (expectedSize >= 0 && n != expectedSize) {
        throw new ImageException("blob " + (expected == null ? actual : expected) + ": expected size " + expectedSize
            + " bytes, got " + n + "; refused");
      }
      if (expected != null && !expected.equals(actual)) {
        throw new ImageException("digest mismatch: expected " + expected + ", got " + actual + " (" + n
            + " bytes); the content was refused and not cached");
      }
      Files.move(tmp, path(actual), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      tmp = null;
      return actual;
    } catch (IOException e) {
      throw new ImageException("cannot store blob" + (expected == null ? "" : " " + expected) + ": " + e.getMessage(), e);
    } finally {
      if (tmp != null) {
        try {
          Files.deleteIfExists(tmp);
        } catch (IOException ignored) {
          // a leftover temp file is removed when the store is opened next
        }
      }
    }
  }

  public Digest put(byte[] content, Digest expected) {
    return put(new ByteArrayInputStream(content), expected, content.length);
  }

  public InputStream open(Digest d) {
    try {
      return Files.newInputStream(path(d), LinkOption.NOFOLLOW_LINKS);
    } catch (NoSuchFileException e) {
      throw notFound(d);
    } catch (IOException e) {
      throw new ImageException("cannot read blob " + d + ": " + e.getMessage(), e);
    }
  }

  /** Reads a small blob (manifest, config) whole; larger than {@code max} bytes is an error. */
  public byte[] read(Digest d, long max) {
    long size = size(d);
    if (size > max) {
      throw new ImageException("blob " + d + " is " + size + " bytes, more than the " + max + " allowed for it");
    }
    try (InputStream in = open(d)) {
      return in.readNBytes((int) max);
    } catch (IOException e) {
      throw new ImageException("cannot read blob " + d + ": " + e.getMessage(), e);
    }
  }

  public boolean delete(Digest d) {
    try {
      return Files.deleteIfExists(path(d));
    } catch (IOException e) {
      throw new ImageException("cannot delete blob " + d + ": " + e.getMessage(), e);
    }
  }

  /** Every blob present (temp files excluded). */
  public Set<Digest> list() {
    Set<Digest> out = new HashSet<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
      for (Path p : ds) {
        String name = p.getFileName().toString();
        if (!name.startsWith(TEMP_PREFIX) && Digest.isDigest(Digest.ALGORITHM + ":" + name)) {
          out.add(new Digest(name));
        }
      }
    } catch (IOException e) {
      throw new ImageException("cannot list blobs in " + dir + ": " + e.getMessage(), e);
    }
    return out;
  }

  private void removeTemps() throws IOException {
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, TEMP_PREFIX + "*")) {
      for (Path p : ds) {
        Files.deleteIfExists(p);
      }
    }
  }

  private static ImageException notFound(Digest d) {
    return new ImageException.NotFound("blob " + d + " is not in the store");
  }
}

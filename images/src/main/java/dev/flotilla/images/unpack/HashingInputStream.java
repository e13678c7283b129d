package dev.flotilla.images.unpack;

import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;

/**
 * Hashes every byte that passes, skipped ones included (the tar reader skips what it does not
 * extract, and {@link java.security.DigestInputStream} would not see those), and fails loudly
 * past a byte limit so a decompression bomb stops early with a message, not a silent EOF.
 */
final class HashingInputStream extends FilterInputStream {
  private final MessageDigest hasher = Digest.newHasher();
  private final long limit;
  private final Digest layer;
  private long count;

  HashingInputStream(InputStream in, long limit, Digest layer) {
    super(in);
    this.limit = limit;
    this.layer = layer;
  }

  @Override
  public int read() throws IOException {
    int b = super.read();
    if (b >= 0) {
      add(1);
      hasher.update((byte) b);
    }
    return b;
  }

  @Override
  public int read(byte[] b, int off, int len) throws IOException {
    int r = super.read(b, off, len);
    if (r > 0) {
      add(r);
      hasher.update(b, off, r);
    }
    return r;
  }

  @Override
  public long skip(long n) throws IOException {
    byte[] buf = new byte[(int) Math.min(64 * 1024, Math.max(n, 1))];
    long done = 0;
    while (done < n) {
      int r = read(buf, 0, (int) Math.min(buf.length, n - done));
      if (r < 0) {
        break;
      }
      done += r;
    }
    return done;
  }

  @Override
  public boolean markSupported() {
    return false;
  }

  @Override
  public void close() {
    // the caller closes the underlying stream
  }

  /** Reads to the end (what follows the tar's end marker counts in the diff_id too) and returns the digest. */
  Digest drainAndDigest() throws IOException {
    skip(Long.MAX_VALUE);
    return Digest.fromHasher(hasher);
  }

  private void add(long n) {
    count += n;
    if (count > limit) {
      throw new ImageException("layer " + layer + " unpacks to more than " + limit
          + " bytes of tar (flotilla.images.max-layer-bytes); refused");
    }
  }
}

package dev.flotilla.cli;

import com.google.protobuf.ByteString;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.function.Function;

/**
 * The messages of an upload (cp into a sandbox, image import): a first message, then the input in
 * 1 MiB chunks, read only as the transport takes them (a large file is never held in memory).
 */
final class Upload<R> implements Iterator<R> {
  static final int CHUNK = 1024 * 1024;
  /** Progress lines only for files at least this large. */
  static final long PROGRESS_FROM = 16L * 1024 * 1024;

  private final InputStream in;
  private final Function<ByteString, R> chunk;
  private final Progress progress;
  private R first;
  private byte[] next;

  Upload(R first, InputStream in, Function<ByteString, R> chunk, Progress progress) {
    this.first = first;
    this.in = in;
    this.chunk = chunk;
    this.progress = progress;
  }

  @Override
  public boolean hasNext() {
    if (first != null) return true;
    if (next == null) {
      try {
        next = in.readNBytes(CHUNK);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return next.length > 0;
  }

  @Override
  public R next() {
    if (first != null) {
      R f = first;
      first = null;
      return f;
    }
    if (!hasNext()) throw new NoSuchElementException();
    byte[] data = next;
    next = null;
    progress.add(data.length);
    return chunk.apply(ByteString.copyFrom(data));
  }

  /** A line on stderr at every 10% of a file of at least {@link #PROGRESS_FROM} bytes. */
  static final class Progress {
    private final CliContext ctx;
    private final String verb;
    private final String name;
    private final long total;
    private final boolean on;
    private long sent;
    private int reportedTenths;

    /** @param verb what is done, e.g. "copying"; {@code on} false: silent (a total below 0: unknown, silent too) */
    Progress(CliContext ctx, String verb, String name, long total, boolean on) {
      this.ctx = ctx;
      this.verb = verb;
      this.name = Names.oneLine(name);
      this.total = total;
      this.on = on && total >= PROGRESS_FROM;
    }

    void add(long bytes) {
      sent += bytes;
      if (!on) return;
      int tenths = (int) Math.min(10, sent * 10 / total);
      if (tenths > reportedTenths) {
        reportedTenths = tenths;
        ctx.err().printf("%s %s: %s of %s (%d%%)%n", verb, name, ImageText.size(sent), ImageText.size(total),
            Math.min(100, sent * 100 / total));
      }
    }
  }
}

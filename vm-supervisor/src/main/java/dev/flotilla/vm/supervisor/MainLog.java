package dev.flotilla.vm.supervisor;

import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecExited;
import dev.flotilla.sandbox.protocol.ExecOutput;
import dev.flotilla.vm.NodeOnlyFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.apache.pekko.NotUsed;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.stream.BoundedSourceQueue;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.QueueOfferResult;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;

/**
 * The log of one sandbox's main process on this node: its stdout and stderr, and how each run of
 * it ended, across the sandbox's incarnations. Bounded: two files of at most half the cap each;
 * when the newer is full it replaces the older, so the log keeps between half and all of its cap
 * of the most recent output, counted on disk: {@link #HEADER} bytes of framing per piece of output
 * the node read, so a program that prints a few bytes at a time fits less output into the same
 * cap. Written only by the node (records are framed by the node: what the
 * sandbox printed is data, never structure), in a node-only directory.
 *
 * <p>Each record says which incarnation and which offset of that incarnation's output it holds,
 * so a node that restarts and re-attaches to a running main process resumes reading it where
 * the log ends ({@link #progress}). A record cut short by a crash is dropped when the log opens.
 */
public final class MainLog {

  static final String OLDER = ".1";
  private static final byte OUT = 1;
  private static final byte ERR = 2;
  private static final byte EXIT = 3;
  /** Framing of one record: kind, incarnation, offset, length. */
  static final int HEADER = 1 + 8 + 8 + 4;
  private static final int FOLLOW_BUFFER = 4096;

  /** How far a main process's output has been logged, and whether its end has been. */
  public record Progress(long offset, boolean exited, int exitCode, int signal, String reason) {
    static final Progress NONE = new Progress(0, false, 0, 0, "");
  }

  private record Entry(byte kind, long incarnation, long offset, byte[] data) {
    ExecEvent event() {
      if (kind == EXIT) {
        ByteBuffer b = ByteBuffer.wrap(data);
        return new ExecExited(b.getInt(), b.getInt());
      }
      return new ExecOutput(kind == ERR, ByteString.fromArrayUnsafe(data));
    }

    Progress progress() {
      if (kind != EXIT) return new Progress(offset + data.length, false, 0, 0, "");
      ByteBuffer b = ByteBuffer.wrap(data);
      int code = b.getInt();
      int signal = b.getInt();
      return new Progress(offset, true, code, signal, new String(data, 8, data.length - 8, StandardCharsets.UTF_8));
    }
  }

  private final Path current;
  private final Path older;
  private final long halfMax;
  private final int recordMax;
  private final List<Consumer<Entry>> followers = new ArrayList<>();
  private long size;
  private Entry last;
  private boolean closed;

  /** Touches no file: the log is opened by its first use, which is always off actor threads. */
  MainLog(Path file, long halfMax) {
    this.current = file;
    this.older = file.resolveSibling(file.getFileName() + OLDER);
    this.halfMax = halfMax;
    this.recordMax = (int) Math.max(1024, Math.min(64 * 1024, halfMax / 4));
  }

  private boolean opened;

  /** Makes the file (and its node-only directory) if missing, and reads where it ends; once. */
  private void open() throws IOException {
    if (opened) return;
    NodeOnlyFiles.createPrivateDir(current.getParent());
    if (!Files.exists(current)) NodeOnlyFiles.writePrivateFile(current, new byte[0]);
    List<Entry> kept = new ArrayList<>();
    size = scan(current, kept, true);
    if (kept.isEmpty() && Files.exists(older)) scan(older, kept, false);
    last = kept.isEmpty() ? null : kept.get(kept.size() - 1);
    opened = true;
  }

  // ------------------------------------------------------------------------------ writing

  /** Output of incarnation {@code incarnation}'s main process at {@code offset} of its output. */
  public synchronized void appendOutput(long incarnation, long offset, boolean stderr, byte[] data) throws IOException {
    open();
    for (int at = 0; at < data.length; at += recordMax) {
      int n = Math.min(recordMax, data.length - at);
      byte[] part = at == 0 && n == data.length ? data : java.util.Arrays.copyOfRange(data, at, at + n);
      append(new Entry(stderr ? ERR : OUT, incarnation, offset + at, part));
    }
  }

  /** The end of incarnation {@code incarnation}'s main process, after {@code offset} bytes of output. */
  public synchronized void appendExit(long incarnation, long offset, int exitCode, int signal, String reason) throws IOException {
    open();
    byte[] why = reason.getBytes(StandardCharsets.UTF_8);
    ByteBuffer b = ByteBuffer.allocate(8 + Math.min(why.length, 1024));
    b.putInt(exitCode).putInt(signal).put(why, 0, b.remaining());
    append(new Entry(EXIT, incarnation, offset, b.array()));
  }

  private void append(Entry e) throws IOException {
    if (closed) throw new IOException("the main log " + current + " was removed");
    int len = HEADER + e.data().length;
    if (size > 0 && size + len > halfMax) {
      Files.move(current, older, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      NodeOnlyFiles.writePrivateFile(current, new byte[0]);
      size = 0;
    }
    ByteBuffer b = ByteBuffer.allocate(len);
    b.put(e.kind()).putLong(e.incarnation()).putLong(e.offset()).putInt(e.data().length).put(e.data()).flip();
    try (FileChannel ch = FileChannel.open(current, StandardOpenOption.WRITE, StandardOpenOption.APPEND)) {
      while (b.hasRemaining()) ch.write(b);
    }
    size += len;
    last = e;
    for (Consumer<Entry> f : List.copyOf(followers)) f.accept(e);
  }

  /** Where incarnation {@code incarnation}'s main output stands in the log (nothing yet: offset 0). */
  public synchronized Progress progress(long incarnation) throws IOException {
    open();
    return last != null && last.incarnation() == incarnation ? last.progress() : Progress.NONE;
  }

  synchronized void close() {
    closed = true;
    for (Consumer<Entry> f : List.copyOf(followers)) f.accept(null);
    followers.clear();
  }

  // ------------------------------------------------------------------------------ reading

  /**
   * The log as a stream: the last {@code tail} lines ({@code tail < 0}: all it keeps), then, with
   * {@code follow}, new output until the main process ends (its {@link ExecExited} is the last
   * element) or the reader cancels. With {@code follow} and no main process running now, the
   * stream ends at once with the last end recorded. Reads the disk: call off actor threads.
   */
  public Source<ExecEvent, NotUsed> read(int tail, boolean follow, Materializer mat) throws IOException {
    List<ExecEvent> snapshot = new ArrayList<>();
    Source<ExecEvent, NotUsed> live = null;
    synchronized (this) {
      open();
      List<Entry> all = new ArrayList<>();
      if (Files.exists(older)) scan(older, all, false);
      scan(current, all, false);
      for (Entry e : tailOf(all, tail)) snapshot.add(e.event());
      if (follow) {
        if (last != null && last.kind() == EXIT) {
          snapshot.add(last.event());
        } else if (!closed) {
          Pair<BoundedSourceQueue<ExecEvent>, Source<ExecEvent, NotUsed>> q = Source.<ExecEvent>queue(FOLLOW_BUFFER).preMaterialize(mat);
          Consumer<Entry> follower = new Consumer<>() {
            @Override
            public void accept(Entry e) {
              BoundedSourceQueue<ExecEvent> queue = q.first();
              if (e == null) {
                queue.complete();
                return;
              }
              if (queue.offer(e.event()) != QueueOfferResult.enqueued()) {
                followers.remove(this);
                queue.fail(new IOException("the reader fell behind the log of the main process; read it again"));
              } else if (e.kind() == EXIT) {
                followers.remove(this);
                queue.complete();
              }
            }
          };
          followers.add(follower);
          live = q.second().watchTermination((m, done) -> {
            done.whenComplete((d, err) -> unfollow(follower));
            return NotUsed.getInstance();
          });
        }
      }
    }
    Source<ExecEvent, NotUsed> s = Source.from(snapshot);
    return live == null ? s : s.concat(live);
  }

  private synchronized void unfollow(Consumer<Entry> f) {
    followers.remove(f);
  }

  /** The output entries holding the last {@code lines} lines (exits left out); a last line without its newline counts. */
  static List<Entry> tailOf(List<Entry> all, int lines) {
    List<Entry> out = new ArrayList<>();
    for (Entry e : all) if (e.kind() != EXIT) out.add(e);
    if (lines < 0) return out;
    if (lines == 0) return List.of();
    boolean first = true;
    int newlines = 0;
    for (int i = out.size() - 1; i >= 0; i--) {
      byte[] d = out.get(i).data();
      for (int j = d.length - 1; j >= 0; j--) {
        boolean terminatesLastLine = first;
        first = false;
        if (d[j] != '\n' || terminatesLastLine || ++newlines < lines) continue;
        // Cut just after the newline that ends the line before the ones kept.
        Entry e = out.get(i);
        List<Entry> kept = new ArrayList<>();
        if (j + 1 < d.length) {
          kept.add(new Entry(e.kind(), e.incarnation(), e.offset() + j + 1, java.util.Arrays.copyOfRange(d, j + 1, d.length)));
        }
        kept.addAll(out.subList(i + 1, out.size()));
        return kept;
      }
    }
    return out;
  }

  /**
   * Reads the records of {@code file} into {@code into}; returns the length of its whole records.
   * With {@code repair}, a torn last record (a crash mid-write) is cut off the file.
   */
  private static long scan(Path file, List<Entry> into, boolean repair) throws IOException {
    byte[] bytes = Files.readAllBytes(file);
    ByteBuffer b = ByteBuffer.wrap(bytes);
    long good = 0;
    while (b.remaining() >= HEADER) {
      byte kind = b.get();
      long inc = b.getLong();
      long off = b.getLong();
      int len = b.getInt();
      if (kind < OUT || kind > EXIT || len < 0 || len > b.remaining()) break;
      byte[] data = new byte[len];
      b.get(data);
      into.add(new Entry(kind, inc, off, data));
      good = b.position();
    }
    if (repair && good < bytes.length) {
      try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
        ch.truncate(good);
      }
    }
    return good;
  }
}

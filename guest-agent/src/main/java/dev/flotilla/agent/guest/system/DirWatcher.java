package dev.flotilla.agent.guest.system;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.guest.process.TenantRoot;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.WatchDirRequest;
import dev.flotilla.agent.protocol.v1.WatchDirResponse;
import dev.flotilla.agent.protocol.v1.WatchEvent;
import dev.flotilla.agent.protocol.v1.WatchEvents;
import com.google.protobuf.CodedOutputStream;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.file.ClosedWatchServiceException;
import java.nio.file.FileSystems;
import java.nio.file.Path;
import java.nio.file.SecureDirectoryStream;
import java.nio.file.StandardWatchEventKinds;
import java.nio.file.WatchKey;
import java.nio.file.WatchService;
import java.nio.file.attribute.PosixFileAttributes;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * WatchDir: one inotify instance (Java's {@link WatchService}) for the whole agent, whatever the
 * number of watches, so the thread budget is fixed: the JDK's poller, one dispatcher that routes
 * events to the watches' queues (it never blocks on a connection) and one sender that writes the
 * watches' DATA frames as the host's credit allows. Each watch queues at most its cap of events;
 * past it, events are dropped and counted in one OVERFLOW event at their place.
 *
 * <p>Confinement: the directories are found and checked through descriptors ({@link Confined});
 * inotify registration itself goes by path (Java exposes neither {@code IN_DONT_FOLLOW} nor a
 * directory descriptor), so each registration is checked afterwards to have reached the directory
 * the descriptor saw, and refused otherwise.
 */
public final class DirWatcher {

  private static final System.Logger LOG = System.getLogger(DirWatcher.class.getName());
  /** Watches of the whole agent (every connection). */
  public static final int MAX_WATCHES = 64;
  /** Directories registered with inotify, all watches together (the kernel's own limit is per user). */
  static final int MAX_DIRS = 4096;
  static final int MAX_DIRS_PER_WATCH = 1024;
  static final int DEFAULT_QUEUE = 1024;
  static final int MIN_QUEUE = 16;
  static final int MAX_QUEUE = 16_384;
  static final int DEFAULT_WINDOW = 64 * 1024;
  /** Room for any one event (a path under PATH_MAX) in a window. */
  static final int MIN_WINDOW = 16 * 1024;
  static final int MAX_WINDOW = 1 << 20;
  private static final int MAX_BATCH = 512;
  private static final int MAX_PATH = 4096;

  /** Where a watch's DATA frames go (its stream); {@code end}: the last one. */
  @FunctionalInterface
  public interface Sink {
    void send(byte[] payload, boolean end);
  }

  private final TenantRoot root;
  private final int maxBytes;
  private final Map<WatchKey, List<Sub>> subs = new HashMap<>();
  private int watches;
  private int dirs;
  private WatchService service;
  private ExecutorService sender;

  private record Sub(Watch watch, String rel) {}

  /** @param maxBytes most bytes of events in one DATA frame */
  public DirWatcher(FileService files, int maxBytes) {
    this.root = files.root();
    this.maxBytes = maxBytes;
  }

  /**
   * Starts watching; the watch sends nothing until {@link Watch#activate} (after its answer went
   * out). Fails NOT_FOUND, FAILED_PRECONDITION (not a directory) or RESOURCE_EXHAUSTED (too many).
   */
  public Watch watch(WatchDirRequest r, Sink sink) {
    int queue = r.getMaxQueuedEvents() == 0 ? DEFAULT_QUEUE : Math.max(MIN_QUEUE, Math.min(r.getMaxQueuedEvents(), MAX_QUEUE));
    int window = r.getInitialWindow() == 0 ? DEFAULT_WINDOW
        : Math.max(MIN_WINDOW, (int) Math.min(Integer.toUnsignedLong(r.getInitialWindow()), MAX_WINDOW));
    synchronized (this) {
      if (watches >= MAX_WATCHES) {
        throw new AgentError(Error.Code.RESOURCE_EXHAUSTED, "cannot watch " + r.getPath() + ": the agent already runs "
            + MAX_WATCHES + " watches; cancel one");
      }
      start();
      watches++;
    }
    Watch w = null;
    try (Confined c = Confined.open(root, r.getPath(), true)) {
      w = new Watch(c.names(), c.tenantPath(), r.getRecursive(), queue, window, sink);
      try (SecureDirectoryStream<Path> dir = c.openSelf()) {
        w.addTree(dir, "", false);
      } catch (IOException e) {
        throw Confined.map("watch", c.tenantPath(), e);
      }
    } catch (RuntimeException e) {
      if (w != null) {
        w.end(null);
      } else {
        synchronized (this) {
          watches--;
        }
      }
      throw e;
    }
    return w;
  }

  private void start() {
    if (service != null) return;
    try {
      service = FileSystems.getDefault().newWatchService();
    } catch (IOException e) {
      throw new AgentError(Error.Code.UNAVAILABLE, "cannot watch: no inotify instance: " + e.getMessage());
    }
    sender = Executors.newSingleThreadExecutor(r -> daemon(r, "agent-watch-sender"));
    daemon(this::dispatch, "agent-watch-dispatcher").start();
  }

  private static Thread daemon(Runnable r, String name) {
    Thread t = new Thread(r, name);
    t.setDaemon(true);
    return t;
  }

  private void dispatch() {
    try {
      while (true) {
        WatchKey key = service.take();
        List<Sub> to;
        synchronized (this) {
          to = List.copyOf(subs.getOrDefault(key, List.of()));
        }
        for (var e : key.pollEvents()) {
          for (Sub s : to) s.watch.onEvent(s.rel, e);
        }
        if (!key.reset()) {
          synchronized (this) {
            List<Sub> gone = subs.remove(key);
            if (gone != null) dirs -= gone.size();
          }
          for (Sub s : to) s.watch.keyGone(key, s.rel);
        }
      }
    } catch (InterruptedException | ClosedWatchServiceException e) {
      // the agent is ending
    } catch (RuntimeException e) {
      LOG.log(Level.ERROR, "watch dispatcher failed; watches stop reporting", e);
    }
  }

  /** One WatchDir: its directories, its queue, its credit. */
  public final class Watch {
    private final List<String> names;
    private final String tenantPath;
    private final boolean recursive;
    private final int queueCap;
    private final Sink sink;
    private final Map<WatchKey, String> keys = new HashMap<>();
    private final ArrayDeque<WatchEvent> queue = new ArrayDeque<>();
    private long credit;
    private boolean active;
    private boolean ended;
    private boolean flushPending;
    private boolean partial;

    Watch(List<String> names, String tenantPath, boolean recursive, int queueCap, int window, Sink sink) {
      this.names = names;
      this.tenantPath = tenantPath;
      this.recursive = recursive;
      this.queueCap = queueCap;
      this.credit = window;
      this.sink = sink;
    }

    public synchronized WatchDirResponse response() {
      return WatchDirResponse.newBuilder().setPath(tenantPath).setWatchedDirs(keys.size()).setPartial(partial).build();
    }

    /** Its answer is on the wire: events may follow. */
    public void activate() {
      synchronized (this) {
        active = true;
      }
      scheduleFlush();
    }

    /** The host's WINDOW_UPDATE. */
    public void grant(int bytes) {
      synchronized (this) {
        credit = Math.min(credit + bytes, 2L * MAX_WINDOW);
      }
      scheduleFlush();
    }

    /**
     * Ends the watch and frees its directories; with a {@code reason} the host is told (the last
     * DATA frame), without one (the connection is gone) nothing is sent.
     */
    public void end(String reason) {
      List<WatchKey> mine;
      synchronized (this) {
        if (ended) return;
        ended = true;
        queue.clear();
        mine = new ArrayList<>(keys.keySet());
        keys.clear();
      }
      for (WatchKey k : mine) unsubscribe(k, this);
      synchronized (DirWatcher.this) {
        watches--;
      }
      if (reason != null) {
        // Short: the host takes this last frame past its credit.
        String shown = reason.length() > 300 ? reason.substring(0, 300) : reason;
        byte[] last = WatchEvents.newBuilder().setEndReason(shown).build().toByteArray();
        sender.execute(() -> sink.send(last, true));
      }
    }

    /**
     * Registers {@code dir} (at {@code rel} under the watched directory) and, when recursive, the
     * directories under it, read through descriptors; {@code announce}: report what is already in
     * them as CREATED (a directory created under a recursive watch may fill before it is watched).
     */
    void addTree(SecureDirectoryStream<Path> dir, String rel, boolean announce) throws IOException {
      if (!register(dir, rel)) return;
      if (!recursive && !announce) return;
      List<String> children = new ArrayList<>();
      for (Path p : dir) {
        children.add(p.getFileName().toString());
        if (children.size() == DirLister.MAX_NAMES_PER_DIR) break;
      }
      for (String n : children) {
        String childRel = rel.isEmpty() ? n : rel + "/" + n;
        if (announce) offer(event(WatchEvent.Kind.CREATED, childRel, 0));
        if (!recursive) continue;
        Path name = Confined.name(n);
        PosixFileAttributes a;
        try {
          a = Confined.attributes(dir, name);
        } catch (IOException gone) {
          continue;
        }
        if (!a.isDirectory()) continue;
        try (SecureDirectoryStream<Path> sub = Confined.child(dir, name, tenantPath + "/" + childRel)) {
          addTree(sub, childRel, announce);
        } catch (IOException changed) {
          // gone or swapped meanwhile: not watched
        }
      }
    }

    /** inotify on {@code dir} by path, then checked to be the directory the descriptor holds. */
    private boolean register(SecureDirectoryStream<Path> dir, String rel) throws IOException {
      synchronized (DirWatcher.this) {
        synchronized (this) {
          if (ended) return false;
          if (keys.size() >= MAX_DIRS_PER_WATCH || dirs >= MAX_DIRS) {
            if (rel.isEmpty()) {
              throw new AgentError(Error.Code.RESOURCE_EXHAUSTED, "cannot watch " + tenantPath + ": the agent watches "
                  + dirs + " directories already");
            }
            partial = true;
            return false;
          }
        }
      }
      List<String> where = new ArrayList<>(names);
      if (!rel.isEmpty()) where.addAll(List.of(rel.split("/")));
      Path host = root.join(where);
      PosixFileAttributes held = Confined.attributes(dir, null);
      WatchKey key;
      try {
        key = host.register(service, StandardWatchEventKinds.ENTRY_CREATE, StandardWatchEventKinds.ENTRY_DELETE,
            StandardWatchEventKinds.ENTRY_MODIFY);
      } catch (IOException e) {
        if (String.valueOf(e.getMessage()).contains("limit")) {
          throw new AgentError(Error.Code.RESOURCE_EXHAUSTED, "cannot watch " + tenantPath + ": " + e.getMessage());
        }
        throw e;
      }
      synchronized (DirWatcher.this) {
        subs.computeIfAbsent(key, k -> new ArrayList<>()).add(new Sub(this, rel));
        dirs++;
      }
      synchronized (this) {
        keys.put(key, rel);
      }
      try {
        Confined.checkSame(host, held, tenantPath + (rel.isEmpty() ? "" : "/" + rel));
      } catch (AgentError raced) {
        synchronized (this) {
          keys.remove(key);
        }
        unsubscribe(key, this);
        if (rel.isEmpty()) throw raced;
        return false;
      }
      return true;
    }

    void onEvent(String rel, java.nio.file.WatchEvent<?> e) {
      if (e.kind() == StandardWatchEventKinds.OVERFLOW) {
        offer(event(WatchEvent.Kind.OVERFLOW, "", 0)); // the kernel's queue overflowed: unknown how many
        return;
      }
      String name = String.valueOf(e.context());
      String path = rel.isEmpty() ? name : rel + "/" + name;
      WatchEvent.Kind kind = e.kind() == StandardWatchEventKinds.ENTRY_CREATE ? WatchEvent.Kind.CREATED
          : e.kind() == StandardWatchEventKinds.ENTRY_DELETE ? WatchEvent.Kind.DELETED : WatchEvent.Kind.MODIFIED;
      offer(event(kind, path, 0));
      if (recursive && kind == WatchEvent.Kind.CREATED) {
        List<String> where = new ArrayList<>(names);
        where.addAll(List.of(path.split("/")));
        try (SecureDirectoryStream<Path> sub = Confined.openDir(root, where, tenantPath + "/" + path)) {
          addTree(sub, path, true);
        } catch (IOException | AgentError notADirectory) {
          // a file, or gone already
        }
      }
    }

    void keyGone(WatchKey key, String rel) {
      synchronized (this) {
        keys.remove(key);
      }
      if (rel.isEmpty()) end("the watched directory " + tenantPath + " is gone");
    }

    private void offer(WatchEvent ev) {
      synchronized (this) {
        if (ended) return;
        WatchEvent last = queue.peekLast();
        if (queue.size() >= queueCap - 1) {
          // Full: drop, and count what was dropped in one OVERFLOW at the end of the queue.
          if (last != null && last.getKind() == WatchEvent.Kind.OVERFLOW) {
            queue.pollLast();
            queue.addLast(event(WatchEvent.Kind.OVERFLOW, "", last.getDropped() + 1));
          } else {
            queue.addLast(event(WatchEvent.Kind.OVERFLOW, "", 1));
          }
        } else {
          queue.addLast(ev);
        }
      }
      scheduleFlush();
    }

    private void scheduleFlush() {
      synchronized (this) {
        if (flushPending || !active || ended || queue.isEmpty()) return;
        flushPending = true;
      }
      sender.execute(this::flush);
    }

    /** On the sender thread: as many queued events as the credit and the frame allow, in order. */
    private void flush() {
      while (true) {
        byte[] payload;
        synchronized (this) {
          flushPending = false;
          if (!active || ended) return;
          WatchEvents.Builder b = WatchEvents.newBuilder();
          int size = 0;
          while (!queue.isEmpty() && b.getEventsCount() < MAX_BATCH) {
            int add = CodedOutputStream.computeMessageSize(1, queue.peekFirst());
            if (size + add > credit || size + add > maxBytes) break;
            b.addEvents(queue.pollFirst());
            size += add;
          }
          if (size == 0) return;
          credit -= size;
          payload = b.build().toByteArray();
        }
        sink.send(payload, false);
      }
    }
  }

  private void unsubscribe(WatchKey key, Watch w) {
    boolean last;
    synchronized (this) {
      List<Sub> s = subs.get(key);
      if (s == null) return;
      int before = s.size();
      s.removeIf(x -> x.watch == w);
      dirs -= before - s.size();
      last = s.isEmpty();
      if (last) subs.remove(key);
    }
    // The same directory watched twice is one inotify watch: it goes with its last watcher.
    if (last) key.cancel();
  }

  private static WatchEvent event(WatchEvent.Kind kind, String path, long dropped) {
    if (path.length() > MAX_PATH) path = path.substring(0, MAX_PATH);
    return WatchEvent.newBuilder().setKind(kind).setPath(path).setDropped(dropped).build();
  }
}

package dev.flotilla.vm.ids;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * Gives every sandbox on this host its own 65536-id host range, out of the node user's
 * subordinate delegations, so that no two live sandboxes ever share a host uid: root in sandbox A
 * is nobody to sandbox B's files, sockets and processes.
 *
 * <p>The table is host-wide: every node on this machine (a local dev cluster runs three) and every
 * driver shares one file, locked for each change and re-read under the lock, so two nodes never hand
 * out one range. A range belongs to one node's sandbox (the node's VM state root, then the sandbox
 * id) for as
 * long as the sandbox has state on that node (its VMs and its writable layer, whose files are owned
 * by ids of that range), across restarts; {@link #release} returns it once the sandbox is deleted or
 * has moved away. The table is written before a range is handed out, so a node that crashes and
 * restarts never gives a range still held by a running sandbox to another one. A range whose node's
 * state root no longer exists (a test's or a local cluster's node thrown away) is free again: nothing
 * of that node can still hold files or processes of it that the node would know of.
 */
public final class IdRangeAllocator {
  /** The host-wide table the node uses (node-only: root, 0700 directory, 0600 file). */
  public static final Path HOST_TABLE = Path.of("/var/lib/flotilla/id-ranges");
  private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  private static final char SEP = '|';
  private static final Object JVM_LOCK = new Object(); // FileLock excludes other processes, not other threads

  /** A sandbox's range: host ids {@code [hostStart, hostStart + 65536)} are its 0..65535. */
  public record Range(long hostStart) {
    public long size() {
      return SubordinateIds.RANGE;
    }
  }

  private final Path file;
  private final String nodeKey;
  private final List<Long> slots; // host start of every usable range, in order

  /**
   * @param file the table (created 0600 on first write, its directory 0700)
   * @param delegations where ranges may come from; an empty list means none can be given
   * @param stateRoot the node's VM state root: names this node among the table's users
   */
  public IdRangeAllocator(Path file, List<SubordinateIds.Delegation> delegations, Path stateRoot) {
    this.file = file;
    this.nodeKey = stateRoot.toAbsolutePath().normalize().toString();
    if (nodeKey.indexOf(SEP) >= 0 || nodeKey.contains("\n")) throw new IllegalArgumentException("unusable state root for the id table: " + nodeKey);
    List<Long> s = new ArrayList<>();
    for (SubordinateIds.Delegation d : delegations) {
      for (long i = 0; i < d.slots(); i++) s.add(d.start() + i * SubordinateIds.RANGE);
    }
    this.slots = List.copyOf(s);
  }

  /**
   * The allocator of the node whose VM state lives in {@code stateRoot}: the host-wide table, the
   * current user's delegations, and a node key derived from that directory.
   */
  public static IdRangeAllocator forNode(Path stateRoot) {
    return new IdRangeAllocator(HOST_TABLE, SubordinateIds.ofCurrentUser(), stateRoot);
  }

  /** How many sandboxes can hold a range at once on this host. */
  public int capacity() {
    return slots.size();
  }

  /**
   * The range of {@code sandboxId} on this node, allocating a free one if it has none.
   *
   * @throws NoRangeException if every range is held; IOException if the table cannot be written
   */
  public Range acquire(String sandboxId) throws IOException {
    String owner = owner(sandboxId);
    return locked(table -> {
      for (var e : table.entrySet()) if (e.getValue().equals(owner)) return new Range(e.getKey());
      for (long start : slots) {
        String holder = table.get(start);
        if (holder == null || abandoned(holder)) {
          table.put(start, owner);
          return new Range(start);
        }
      }
      throw new NoRangeException(slots.isEmpty()
          ? "no subordinate id range is delegated to the node's user (/etc/subuid and /etc/subgid need the same entry)"
          : "all " + slots.size() + " sandbox id ranges of this host are in use; delegate more ids in /etc/subuid and /etc/subgid");
    });
  }

  /** The range {@code sandboxId} holds on this node, if any. */
  public Optional<Range> rangeOf(String sandboxId) throws IOException {
    String owner = owner(sandboxId);
    return locked(table -> table.entrySet().stream().filter(e -> e.getValue().equals(owner)).map(e -> new Range(e.getKey())).findFirst());
  }

  /** Gives back {@code sandboxId}'s range on this node (no-op if it holds none). Only once nothing of it runs or remains. */
  public void release(String sandboxId) throws IOException {
    String owner = owner(sandboxId);
    locked(table -> table.values().removeIf(owner::equals));
  }

  /**
   * Holders named with this prefix are not sandboxes but a driver's own (a VM template's range,
   * whose uid is its clones' group): never in {@link #holders()}, so that no sweep of deleted
   * sandboxes frees them while clones still run.
   */
  public static final String DRIVER_PREFIX = "driver.";

  /** This node's sandboxes that hold a range, with its start (not the driver's own, {@link #DRIVER_PREFIX}). */
  public Map<String, Long> holders() throws IOException {
    String prefix = nodeKey + SEP;
    return locked(table -> {
      Map<String, Long> out = new TreeMap<>();
      table.forEach((start, owner) -> {
        if (owner.startsWith(prefix) && !owner.startsWith(prefix + DRIVER_PREFIX)) out.put(owner.substring(prefix.length()), start);
      });
      return out;
    });
  }

  /** Thrown when no range is free; its message says what to do. */
  public static final class NoRangeException extends IOException {
    NoRangeException(String message) {
      super(message);
    }
  }

  private String owner(String sandboxId) {
    return nodeKey + SEP + requireName(sandboxId, "sandbox id");
  }

  /** Held by a node whose state root is gone (or by a malformed entry): free to give again. */
  private static boolean abandoned(String holder) {
    int i = holder.lastIndexOf(SEP);
    if (i <= 0) return true;
    return !Files.isDirectory(Path.of(holder.substring(0, i)), LinkOption.NOFOLLOW_LINKS);
  }

  private static String requireName(String s, String what) {
    if (s == null || !NAME.matcher(s).matches()) throw new IllegalArgumentException("not a valid " + what + ": " + s);
    return s;
  }

  private interface TableOp<T> {
    T apply(Map<Long, String> table) throws IOException;
  }

  /** Runs {@code op} on the table under the host-wide lock; writes it back if {@code op} changed it. */
  private <T> T locked(TableOp<T> op) throws IOException {
    synchronized (JVM_LOCK) {
      Path dir = file.toAbsolutePath().getParent();
      if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
        Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
      }
      Path lockFile = file.resolveSibling(file.getFileName() + ".lock");
      try (FileChannel ch = FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE, LinkOption.NOFOLLOW_LINKS);
           FileLock ignored = ch.lock()) {
        Map<Long, String> table = load();
        Map<Long, String> before = new TreeMap<>(table);
        T result = op.apply(table);
        if (!table.equals(before)) store(table);
        return result;
      }
    }
  }

  private Map<Long, String> load() throws IOException {
    Map<Long, String> owners = new TreeMap<>();
    if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS)) return owners;
    Properties p = new Properties();
    try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      p.load(r);
    }
    for (String k : p.stringPropertyNames()) {
      try {
        // A range no longer delegated stays recorded (its sandbox may still run) but is never handed out again.
        owners.put(Long.parseLong(k), p.getProperty(k));
      } catch (NumberFormatException e) {
        throw new IOException("corrupt id range table " + file + ": key " + k);
      }
    }
    return owners;
  }

  private void store(Map<Long, String> owners) throws IOException {
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    Files.deleteIfExists(tmp);
    Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    Properties p = new Properties();
    owners.forEach((start, owner) -> p.setProperty(Long.toString(start), owner));
    try (Writer w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
      p.store(w, "Flotilla: host id range (start) -> node/sandbox holding it on this host");
    }
    Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }
}

package dev.flotilla.vm.ids;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * Gives every sandbox on this node its own 65536-id host range, out of the node user's
 * subordinate delegations, so that no two live sandboxes ever share a host uid: root in sandbox A
 * is nobody to sandbox B's files, sockets and processes.
 *
 * <p>A sandbox keeps its range for as long as it has state on this node (its VMs and its writable
 * layer, whose files are owned by ids of that range), across restarts; {@link #release} returns it
 * once the sandbox is deleted or has moved away. The table is recorded in a node-only file and
 * written atomically before a range is handed out, so a node that crashes and restarts never gives
 * a range still held by a running sandbox to another one.
 */
public final class IdRangeAllocator {
  private static final Pattern OWNER = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

  /** A sandbox's range: host ids {@code [hostStart, hostStart + 65536)} are its 0..65535. */
  public record Range(long hostStart) {
    public long size() {
      return SubordinateIds.RANGE;
    }
  }

  private final Path file;
  private final List<Long> slots; // host start of every usable range, in order
  private final Map<Long, String> owners = new TreeMap<>();

  /**
   * @param file the node-only table (created 0600 on first write)
   * @param delegations where ranges may come from; an empty list means none can be given
   */
  public IdRangeAllocator(Path file, List<SubordinateIds.Delegation> delegations) throws IOException {
    this.file = file;
    List<Long> s = new ArrayList<>();
    for (SubordinateIds.Delegation d : delegations) {
      for (long i = 0; i < d.slots(); i++) s.add(d.start() + i * SubordinateIds.RANGE);
    }
    this.slots = List.copyOf(s);
    load();
  }

  /** How many sandboxes can hold a range at once on this node. */
  public int capacity() {
    return slots.size();
  }

  /**
   * The range of {@code owner} (a sandbox id), allocating a free one if it has none.
   *
   * @throws IOException if the table cannot be written, or {@link NoRangeException} if every range
   *     is held
   */
  public synchronized Range acquire(String owner) throws IOException {
    requireOwner(owner);
    Optional<Range> held = rangeOf(owner);
    if (held.isPresent()) return held.get();
    for (long start : slots) {
      if (!owners.containsKey(start)) {
        owners.put(start, owner);
        try {
          store();
        } catch (IOException e) {
          owners.remove(start);
          throw e;
        }
        return new Range(start);
      }
    }
    throw new NoRangeException(slots.isEmpty()
        ? "no subordinate id range is delegated to the node's user (/etc/subuid and /etc/subgid need the same entry)"
        : "all " + slots.size() + " sandbox id ranges of this node are in use; delegate more ids in /etc/subuid and /etc/subgid");
  }

  /** The range {@code owner} holds, if any. */
  public synchronized Optional<Range> rangeOf(String owner) {
    return owners.entrySet().stream().filter(e -> e.getValue().equals(owner)).map(e -> new Range(e.getKey())).findFirst();
  }

  /** Gives back {@code owner}'s range (no-op if it holds none). Only once nothing of it runs or remains. */
  public synchronized void release(String owner) throws IOException {
    Optional<Range> r = rangeOf(owner);
    if (r.isEmpty()) return;
    owners.remove(r.get().hostStart());
    store();
  }

  /** Every current owner and the start of its range. */
  public synchronized Map<String, Long> holders() {
    Map<String, Long> out = new TreeMap<>();
    owners.forEach((start, owner) -> out.put(owner, start));
    return out;
  }

  /** Thrown when no range is free; its message says what to do. */
  public static final class NoRangeException extends IOException {
    NoRangeException(String message) {
      super(message);
    }
  }

  private static void requireOwner(String owner) {
    if (owner == null || !OWNER.matcher(owner).matches()) throw new IllegalArgumentException("not a valid range owner: " + owner);
  }

  private void load() throws IOException {
    if (!Files.isRegularFile(file, java.nio.file.LinkOption.NOFOLLOW_LINKS)) return;
    Properties p = new Properties();
    try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      p.load(r);
    }
    for (String k : p.stringPropertyNames()) {
      try {
        long start = Long.parseLong(k);
        String owner = p.getProperty(k);
        // A range no longer delegated stays recorded (its sandbox may still run) but is never handed out again.
        if (OWNER.matcher(owner).matches()) owners.put(start, owner);
      } catch (NumberFormatException e) {
        throw new IOException("corrupt id range table " + file + ": key " + k);
      }
    }
  }

  private void store() throws IOException {
    Files.createDirectories(file.getParent());
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    Files.deleteIfExists(tmp);
    Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    Properties p = new Properties();
    owners.forEach((start, owner) -> p.setProperty(Long.toString(start), owner));
    try (Writer w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
      p.store(w, "Flotilla: host id range (start) -> sandbox holding it on this node");
    }
    Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }
}

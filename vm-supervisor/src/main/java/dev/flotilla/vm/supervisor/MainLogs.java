package dev.flotilla.vm.supervisor;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;

/**
 * The logs of the sandboxes' main processes on this node: one bounded {@link MainLog} per
 * sandbox, in a node-only directory. A log outlives the VMs of its sandbox (it is what tells why
 * the main process ended) and goes when the sandbox is deleted or runs on another host.
 */
public final class MainLogs {

  private static final Pattern ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  private static final String SUFFIX = ".log";

  private final Path dir;
  private final long maxBytes;
  private final ConcurrentHashMap<String, MainLog> open = new ConcurrentHashMap<>();

  /**
   * @param dir node-only directory of the logs, created (0700) if absent
   * @param maxBytes what one sandbox's log keeps on disk at most (its two halves together)
   */
  public MainLogs(Path dir, long maxBytes) {
    if (maxBytes < 2 * 4096) throw new IllegalArgumentException("a main log must keep at least 8 KiB, not " + maxBytes);
    this.dir = dir;
    this.maxBytes = maxBytes;
  }

  public long maxBytes() {
    return maxBytes;
  }

  /**
   * The log of {@code sandboxId}. No file is touched here (callers may be actors): the log is
   * opened, and its torn tail if any cut, by its first read or write.
   */
  public MainLog of(String sandboxId) {
    if (!ID.matcher(sandboxId).matches()) throw new IllegalArgumentException("not a sandbox id: " + sandboxId);
    return open.computeIfAbsent(sandboxId, id -> new MainLog(dir.resolve(id + SUFFIX), maxBytes / 2));
  }

  /** Sandboxes with a log on this node. */
  public Set<String> sandboxes() throws IOException {
    Set<String> ids = new TreeSet<>(open.keySet());
    if (!Files.isDirectory(dir)) return ids;
    try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*" + SUFFIX)) {
      for (Path f : files) {
        String name = f.getFileName().toString();
        String id = name.substring(0, name.length() - SUFFIX.length());
        if (ID.matcher(id).matches()) ids.add(id);
      }
    }
    return ids;
  }

  /** Deletes the log of a sandbox that is gone from this node; readers following it end. */
  public void remove(String sandboxId) throws IOException {
    if (!ID.matcher(sandboxId).matches()) return;
    MainLog log = open.remove(sandboxId);
    if (log != null) log.close();
    Files.deleteIfExists(dir.resolve(sandboxId + SUFFIX));
    Files.deleteIfExists(dir.resolve(sandboxId + SUFFIX + MainLog.OLDER));
  }
}

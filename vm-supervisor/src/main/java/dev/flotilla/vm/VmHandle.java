package dev.flotilla.vm;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.TreeMap;

/**
 * Everything a node needs to find a running VM again: written to {@code handle.properties} in
 * the VM's state directory when it starts, read back by a restarted node to adopt it or reap it.
 *
 * @param driver the driver that started it
 * @param sandboxId the sandbox it belongs to
 * @param incarnation the incarnation it runs
 * @param pid host pid of the VM's root process (QEMU, or the sandbox's init), 0 before start
 * @param startTime that process's start time in clock ticks since boot (field 22 of
 *     /proc/PID/stat), so a reused pid is never mistaken for the VM
 * @param stateDir the VM's directory
 * @param agentSocket the host-side Unix socket of the guest agent
 * @param extra driver-specific values (QMP socket, cgroup path, ...)
 */
public record VmHandle(
    String driver,
    String sandboxId,
    long incarnation,
    long pid,
    long startTime,
    Path stateDir,
    Path agentSocket,
    Map<String, String> extra) {

  public static final String FILE_NAME = "handle.properties";

  public VmHandle {
    Objects.requireNonNull(driver, "driver");
    Objects.requireNonNull(sandboxId, "sandboxId");
    Objects.requireNonNull(stateDir, "stateDir");
    Objects.requireNonNull(agentSocket, "agentSocket");
    extra = Map.copyOf(extra == null ? Map.of() : extra);
  }

  public VmHandle withProcess(long newPid, long newStartTime) {
    return new VmHandle(driver, sandboxId, incarnation, newPid, newStartTime, stateDir, agentSocket, extra);
  }

  public VmHandle withExtra(String key, String value) {
    var m = new TreeMap<>(extra);
    m.put(key, value);
    return new VmHandle(driver, sandboxId, incarnation, pid, startTime, stateDir, agentSocket, m);
  }

  /** Writes the handle atomically (write to a temp file, then rename). */
  public void save() throws IOException {
    var p = new Properties();
    p.setProperty("driver", driver);
    p.setProperty("sandboxId", sandboxId);
    p.setProperty("incarnation", Long.toString(incarnation));
    p.setProperty("pid", Long.toString(pid));
    p.setProperty("startTime", Long.toString(startTime));
    p.setProperty("stateDir", stateDir.toString());
    p.setProperty("agentSocket", agentSocket.toString());
    extra.forEach((k, v) -> p.setProperty("extra." + k, v));
    Files.createDirectories(stateDir);
    Path tmp = stateDir.resolve(FILE_NAME + ".tmp");
    try (Writer w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
      p.store(w, "Flotilla VM handle; read by a restarted node to adopt or reap this VM");
    }
    Files.move(tmp, stateDir.resolve(FILE_NAME), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }

  /** Reads the handle saved in {@code stateDir}. */
  public static VmHandle load(Path stateDir) throws IOException {
    var p = new Properties();
    try (Reader r = Files.newBufferedReader(stateDir.resolve(FILE_NAME), StandardCharsets.UTF_8)) {
      p.load(r);
    }
    var extra = new TreeMap<String, String>();
    for (String k : p.stringPropertyNames()) {
      if (k.startsWith("extra.")) extra.put(k.substring("extra.".length()), p.getProperty(k));
    }
    try {
      return new VmHandle(
          required(p, "driver"),
          required(p, "sandboxId"),
          Long.parseLong(required(p, "incarnation")),
          Long.parseLong(p.getProperty("pid", "0")),
          Long.parseLong(p.getProperty("startTime", "0")),
          Path.of(p.getProperty("stateDir", stateDir.toString())),
          Path.of(required(p, "agentSocket")),
          extra);
    } catch (NumberFormatException e) {
      throw new IOException("corrupt VM handle in " + stateDir + ": " + e.getMessage(), e);
    }
  }

  private static String required(Properties p, String key) throws IOException {
    String v = p.getProperty(key);
    if (v == null) throw new IOException("VM handle lacks '" + key + "'");
    return v;
  }
}

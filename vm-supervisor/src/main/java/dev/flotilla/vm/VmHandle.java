package dev.flotilla.vm;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Pattern;
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

  /**
   * Writes the handle atomically (write to a temp file, then rename), 0600 from the temp file's
   * creation: it names pids and paths the node will act on.
   */
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
    var bytes = new ByteArrayOutputStream();
    try (Writer w = new OutputStreamWriter(bytes, StandardCharsets.UTF_8)) {
      p.store(w, "Flotilla VM handle; read by a restarted node to adopt or reap this VM");
    }
    NodeOnlyFiles.writePrivateFile(stateDir.resolve(FILE_NAME), bytes.toByteArray());
  }

  /** Reads the handle saved in {@code stateDir}; its agent socket must lie under {@code stateDir}. See {@link #load(Path, Path)}. */
  public static VmHandle load(Path stateDir) throws IOException {
    return load(stateDir, null);
  }

  /** Where drivers keep what a sandbox's uid must reach (mount points, agent sockets) by default. */
  public static final Path RUN_ROOT = Path.of("/run/flotilla");

  /**
   * Reads the handle saved in {@code stateDir}, trusting nothing in it that could lead the node
   * elsewhere: the state directory is the one it was read from (the stored one is ignored); the
   * file must be a regular file of the node's uid that group and others cannot write; sandbox id,
   * incarnation and pid must be well-formed; the agent socket must lie under the state directory
   * or under {@code runtimeRoot} (when given), through no symbolic link.
   *
   * @throws IOException when any of that fails: a corrupt handle is reported, never acted on
   */
  public static VmHandle load(Path stateDir, Path runtimeRoot) throws IOException {
    Path dir = stateDir.toAbsolutePath().normalize();
    Path file = dir.resolve(FILE_NAME);
    byte[] content;
    try {
      // handles from before they were saved 0600 are 0644: readable, never writable, by others
      content = NodeOnlyFiles.readNodeFile(file, 64 * 1024, true);
    } catch (java.nio.file.NoSuchFileException e) {
      throw e;
    } catch (IOException e) {
      throw new IOException("untrusted VM handle in " + dir + ": " + e.getMessage(), e);
    }
    var p = new Properties();
    try (Reader r = new InputStreamReader(new java.io.ByteArrayInputStream(content), StandardCharsets.UTF_8)) {
      p.load(r);
    }
    var extra = new TreeMap<String, String>();
    for (String k : p.stringPropertyNames()) {
      if (k.startsWith("extra.")) extra.put(k.substring("extra.".length()), p.getProperty(k));
    }
    VmHandle h;
    try {
      h = new VmHandle(
          required(p, "driver"),
          required(p, "sandboxId"),
          Long.parseLong(required(p, "incarnation")),
          Long.parseLong(p.getProperty("pid", "0")),
          Long.parseLong(p.getProperty("startTime", "0")),
          dir,
          Path.of(required(p, "agentSocket")),
          extra);
    } catch (NumberFormatException | java.nio.file.InvalidPathException e) {
      throw new IOException("corrupt VM handle in " + dir + ": " + e.getMessage(), e);
    }
    if (!SANDBOX_ID.matcher(h.sandboxId()).matches()) {
      throw new IOException("corrupt VM handle in " + dir + ": sandbox id '" + h.sandboxId() + "' is not " + SANDBOX_ID.pattern());
    }
    if (h.incarnation() <= 0) throw new IOException("corrupt VM handle in " + dir + ": incarnation " + h.incarnation());
    if (h.pid() < 0 || h.startTime() < 0) throw new IOException("corrupt VM handle in " + dir + ": pid " + h.pid() + ", start time " + h.startTime());
    // Lexical only: the socket may sit in a directory its sandbox can write (and so may be a link
    // now); that never makes the handle unreadable, or its VM could not be adopted or reaped. Who
    // holds the socket is checked when the node connects (SO_PEERCRED), not here.
    Path socket = h.agentSocket().toAbsolutePath().normalize();
    Path runRoot = (runtimeRoot == null ? RUN_ROOT : runtimeRoot).toAbsolutePath().normalize();
    if (!socket.equals(h.agentSocket()) || !(socket.startsWith(dir) || socket.startsWith(runRoot))) {
      throw new IOException("corrupt VM handle in " + dir + ": agent socket " + h.agentSocket()
          + " is neither under the state directory nor under " + runRoot);
    }
    return h;
  }

  /** What a handle read from disk may name as its sandbox (ids become paths and process names). */
  public static final Pattern SANDBOX_ID = Pattern.compile("[a-z0-9-]{1,64}");

  private static String required(Properties p, String key) throws IOException {
    String v = p.getProperty(key);
    if (v == null) throw new IOException("VM handle lacks '" + key + "'");
    return v;
  }
}

package dev.flotilla.vm.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * An OCI runtime binary ({@code runc}; {@code crun} takes the same commands) with its state kept
 * under a node-only {@code --root}, so a restarted node finds its containers there and nothing a
 * sandbox writes can be mistaken for that state. Blocking: callers run it on a blocking dispatcher.
 */
public final class OciRuntime {
  private static final Pattern ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_.-]{0,127}");
  private static final Duration TIMEOUT = Duration.ofSeconds(30);

  private final Path binary;
  private final Path stateRoot;

  public OciRuntime(Path binary, Path stateRoot) {
    this.binary = binary;
    this.stateRoot = stateRoot;
  }

  public Path binary() {
    return binary;
  }

  /** A container's status and init pid, as {@code runc state} reports them. */
  public record State(String status, long pid) {
    public boolean running() {
      return status.equals("running") || status.equals("paused") || status.equals("created");
    }
  }

  /** The command that runs a container in the foreground: it exits with the container's init. */
  public List<String> runCommand(Path bundle, String id) {
    requireId(id);
    return List.of(binary.toString(), "--root", stateRoot.toString(), "run", "--bundle", bundle.toString(), id);
  }

  public Optional<State> state(String id) throws IOException {
    requireId(id);
    Result r = exec(List.of("state", id));
    if (r.code != 0) {
      if (r.err.contains("does not exist") || r.err.contains("not exist")) return Optional.empty();
      throw new IOException("runc state " + id + " failed: " + r.err.strip());
    }
    JsonNode n = new ObjectMapper().readTree(r.out);
    return Optional.of(new State(n.path("status").asText("unknown"), n.path("pid").asLong(0)));
  }

  /** Ids of every container under this runtime's root. */
  public List<String> list() throws IOException {
    Result r = exec(List.of("list", "-q"));
    if (r.code != 0) throw new IOException("runc list failed: " + r.err.strip());
    return r.out.lines().map(String::strip).filter(l -> !l.isEmpty()).toList();
  }

  public void pause(String id) throws IOException {
    check("pause", exec(List.of("pause", requireId(id))));
  }

  public void resume(String id) throws IOException {
    check("resume", exec(List.of("resume", requireId(id))));
  }

  /**
   * A running container's memory use as its cgroup counts it: {@code usageBytes} includes the
   * page cache, {@code reclaimableBytes} is the part of it the kernel can drop (inactive file
   * pages), so {@code usage - reclaimable} is its working set, as kubelet reckons it.
   */
  public record MemoryUse(long usageBytes, long reclaimableBytes) {
    public long workingSetBytes() {
      return Math.max(0, usageBytes - reclaimableBytes);
    }
  }

  /** {@code runc events --stats}: one sample of the container's cgroup counters (v1 or v2). */
  public MemoryUse memoryUse(String id) throws IOException {
    Result r = exec(List.of("events", "--stats", requireId(id)));
    check("events --stats", r);
    JsonNode mem = new ObjectMapper().readTree(r.out).path("data").path("memory");
    JsonNode raw = mem.path("raw");
    // cgroup v1 counts the hierarchy as total_*; v2's memory.stat is hierarchical already
    long inactive = raw.has("total_inactive_file") ? raw.path("total_inactive_file").asLong(0) : raw.path("inactive_file").asLong(0);
    return new MemoryUse(mem.path("usage").path("usage").asLong(0), inactive);
  }

  /**
   * Changes a running (or paused) container's memory limit (swap held to the same total, as the
   * bundle sets it: the sandbox never swaps) and CPU quota in place; runc orders the writes so a
   * shrink and a growth both pass the kernel's checks.
   */
  public void update(String id, long memoryBytes, long cpuQuotaUs, long cpuPeriodUs) throws IOException {
    check("update", exec(List.of("update", "--memory", Long.toString(memoryBytes), "--memory-swap", Long.toString(memoryBytes),
        "--cpu-period", Long.toString(cpuPeriodUs), "--cpu-quota", Long.toString(cpuQuotaUs), requireId(id))));
  }

  /** Sends {@code signal} to every process of the container. */
  public void kill(String id, String signal) throws IOException {
    Result r = exec(List.of("kill", "--all", requireId(id), signal));
    if (r.code != 0 && !r.err.contains("does not exist") && !r.err.contains("not running")
        && !r.err.contains("process already finished")) {
      throw new IOException("runc kill " + id + " " + signal + " failed: " + r.err.strip());
    }
  }

  /** Removes the container (killing what is left of it) and its cgroups; nothing if it is gone. */
  public void delete(String id) throws IOException {
    Result r = exec(List.of("delete", "--force", requireId(id)));
    if (r.code != 0 && !r.err.contains("does not exist")) throw new IOException("runc delete " + id + " failed: " + r.err.strip());
  }

  /** Container ids are derived by the node, never read from anything a sandbox could write. */
  public static String requireId(String id) {
    if (id == null || !ID.matcher(id).matches()) throw new IllegalArgumentException("not a container id: " + id);
    return id;
  }

  private record Result(int code, String out, String err) {}

  private static void check(String what, Result r) throws IOException {
    if (r.code != 0) throw new IOException("runc " + what + " failed: " + r.err.strip());
  }

  private Result exec(List<String> args) throws IOException {
    List<String> cmd = new ArrayList<>(List.of(binary.toString(), "--root", stateRoot.toString()));
    cmd.addAll(args);
    Process p = new ProcessBuilder(cmd).redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
    try {
      // Small outputs (state JSON, one error line): read after exit is safe below the pipe size.
      if (!p.waitFor(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        throw new IOException(String.join(" ", args) + ": runc did not answer within " + TIMEOUT.toSeconds() + " s");
      }
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
      throw new IOException("interrupted", e);
    }
    return new Result(p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8),
        new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8));
  }
}

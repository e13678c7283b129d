package dev.flotilla.agent.guest.process;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.ExecProcessRequest;
import dev.flotilla.agent.protocol.v1.ListProcessesResponse;
import dev.flotilla.agent.protocol.v1.ProcessInfo;
import java.io.File;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The processes of this agent, by exec id, shared by all connections: a process outlives the
 * connection that started it and any connection may wait for it. An exec id stays known until a
 * WaitProcess has reported its exit and the retention time has passed (so a host that lost the
 * answer can ask again), and while known it cannot be reused.
 */
public final class ProcessTable {

  /** Only what a process needs to find its programs and write its home; the request adds the rest. */
  static final Map<String, String> DEFAULT_ENV = Map.of(
      "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME", "/root",
      "LANG", "C.UTF-8");
  private static final int MAX_WINDOW = 16 << 20;
  /** The largest output ring of a detached process: what the agent holds for a reader that is away. */
  static final int MAX_RING = 16 << 20;
  /**
   * Detached processes known at once (running, or ended and not yet reported): each may hold a
   * ring, and nothing else would bound how many a host keeps (see {@link #start}).
   */
  static final int MAX_DETACHED = 256;
  /** ListProcesses: entries by default and at most; argv bytes kept per entry. */
  static final int DEFAULT_LIST = 256;
  static final int MAX_LIST = 1024;
  static final int MAX_LISTED_ARGV_BYTES = 512;
  private static final AtomicInteger PUMPS = new AtomicInteger();

  private final Map<String, GuestProcess> processes = new ConcurrentHashMap<>();
  private final ScheduledExecutorService scheduler;
  private final Duration retention;
  private final int defaultWindow;
  private final int maxPayload;

  // guarded by this: a clone's agent changes them when it is reborn (see reroot, identity)
  private ExecDefaults defaults;
  private TenantRoot root;
  private Map<String, String> identity;

  /** Made with the table, when the agent starts: its thread exists before any tenant process. */
  private final ExitWatch exits;

  public ProcessTable(ScheduledExecutorService scheduler, Duration retention, int defaultWindow, int maxPayload) {
    this(scheduler, retention, defaultWindow, maxPayload, ExecDefaults.NONE);
  }

  public ProcessTable(ScheduledExecutorService scheduler, Duration retention, int defaultWindow, int maxPayload, ExecDefaults defaults) {
    this(scheduler, retention, defaultWindow, maxPayload, defaults, null);
  }

  /** @param root the tenant's root when the agent runs outside it, null when the agent's root is the tenant's */
  public ProcessTable(ScheduledExecutorService scheduler, Duration retention, int defaultWindow, int maxPayload, ExecDefaults defaults,
      TenantRoot root) {
    this(scheduler, retention, defaultWindow, maxPayload, defaults, root, Map.of());
  }

  /**
   * @param identity set in every process's environment over the image's and the request's, so a
   *     process can tell which sandbox and incarnation runs it (FLOTILLA_SANDBOX_ID,
   *     FLOTILLA_INCARNATION); a request cannot override them
   */
  public ProcessTable(ScheduledExecutorService scheduler, Duration retention, int defaultWindow, int maxPayload, ExecDefaults defaults,
      TenantRoot root, Map<String, String> identity) {
    this.identity = Map.copyOf(identity);
    this.exits = new ExitWatch(java.time.Duration.ofMillis(100));
    this.root = root;
    this.defaults = defaults;
    this.scheduler = scheduler;
    this.retention = retention;
    this.defaultWindow = defaultWindow;
    this.maxPayload = maxPayload;
  }

  /**
   * From now on processes start in {@code root} (null: the agent's own) with {@code defaults}: a
   * template's agent runs its warm-up processes in its own root and takes the tenant's once a
   * rebirth has mounted it. Processes already running stay where they are.
   */
  public synchronized void reroot(ExecDefaults defaults, TenantRoot root) {
    this.defaults = defaults;
    this.root = root;
  }

  /** The identity variables of processes started from now on (a clone's agent was reborn). */
  public synchronized void identity(Map<String, String> identity) {
    this.identity = Map.copyOf(identity);
  }

  /**
   * Starts a process whose output goes to {@code target} on {@code streamId}, or to its own
   * {@link OutputRing} when the request asks for one (a detached process). The output pumps are
   * returned unstarted ({@link Started#startOutput()}) so the caller can answer first: DATA never
   * overtakes the RESPONSE that announces the stream.
   */
  public synchronized Started start(ExecProcessRequest r, int streamId, OutputTarget target) {
    String id = r.getExecId();
    if (id.isEmpty()) throw AgentError.invalid("exec_id is empty");
    if (r.getArgvCount() == 0) throw AgentError.invalid("argv is empty: name a command");
    if (processes.containsKey(id)) {
      throw new AgentError(Error.Code.ALREADY_EXISTS, "exec id '" + id + "' is in use");
    }
    if (r.getOutputRingBytes() > 0 && processes.values().stream().filter(p -> p.ring().isPresent()).count() >= MAX_DETACHED) {
      throw new AgentError(Error.Code.RESOURCE_EXHAUSTED, "this sandbox already keeps " + MAX_DETACHED
          + " detached processes; wait for (or kill and wait for) some first");
    }
    for (var e : r.getEnvMap().entrySet()) {
      // The JVM refuses these with an IllegalArgumentException: a bad request, not an agent failure.
      if (e.getKey().isEmpty() || e.getKey().indexOf('=') >= 0 || e.getKey().indexOf('\0') >= 0) {
        throw AgentError.invalid("env name '" + e.getKey() + "' is invalid: it must be non-empty, without '=' or NUL");
      }
      if (e.getValue().indexOf('\0') >= 0) throw AgentError.invalid("env value of '" + e.getKey() + "' contains NUL");
    }
    if (r.getTty() && !r.getStdin()) throw AgentError.invalid("tty needs stdin=true: a terminal is typed into");
    if (r.getTty() && r.getOutputRingBytes() > 0) throw AgentError.invalid("a detached process cannot have a tty");
    ProcessBuilder pb;
    if (root == null) {
      pb = new ProcessBuilder(defaults.command(r.getArgvList(), r.getUser(), java.nio.file.Path.of("/etc")));
      File dir = new File(defaults.workingDir(r.getWorkingDir()));
      if (!dir.isDirectory()) throw AgentError.invalid("working_dir " + dir + " is not a directory");
      pb.directory(dir);
    } else {
      // the agent lives outside the tenant's root: the process enters it (see TenantRoot)
      pb = new ProcessBuilder(root.command(r.getArgvList(), defaults.workingDir(r.getWorkingDir()),
          defaults.ids(r.getUser(), root.etc())));
      pb.directory(new File("/"));
    }
    Map<String, String> env = pb.environment();
    env.clear();
    env.putAll(defaults.environment(DEFAULT_ENV, r.getEnvMap()));
    env.putAll(identity);
    if (!r.getStdin()) pb.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
    Pty pty = null;
    if (r.getTty()) {
      if (!r.getEnvMap().containsKey("TERM")) env.put("TERM", r.getTerm().isEmpty() ? "xterm" : r.getTerm());
      pty = Pty.open(root == null ? java.nio.file.Path.of("/dev") : root.resolve("/dev"), r.getTtyRows(), r.getTtyCols());
      File slave = pty.slave().toFile();
      pb.redirectInput(ProcessBuilder.Redirect.from(slave))
          .redirectOutput(ProcessBuilder.Redirect.appendTo(slave))
          .redirectError(ProcessBuilder.Redirect.appendTo(slave));
      // A new session whose controlling terminal is the slave (stdin), entered before the
      // tenant's root and user (the helper is the agent's): Ctrl-C and SIGWINCH reach its
      // foreground process group.
      List<String> cmd = new ArrayList<>(setsid());
      cmd.addAll(pb.command());
      pb.command(cmd);
    }
    Process p;
    java.util.Set<Long> before = childPids();
    try {
      p = pb.start();
    } catch (IOException e) {
      if (pty != null) pty.close();
      throw AgentError.invalid("cannot start " + r.getArgvList() + ": " + e.getMessage());
    } catch (OutOfMemoryError e) {
      if (pty != null) pty.close();
      // The sandbox is out of pids or memory. The process may have started, but the JVM could not
      // give it the thread that waits for it: kill it rather than leave a process nobody tracks.
      for (ProcessHandle c : ProcessHandle.current().children().toList()) {
        if (!before.contains(c.pid())) c.destroyForcibly();
      }
      throw new AgentError(Error.Code.RESOURCE_EXHAUSTED, "cannot start " + r.getArgvList()
          + ": the sandbox is out of processes or memory (" + e.getMessage() + "); retry once it has room");
    }
    // A detached process writes into its ring, which never blocks it: unlimited credit.
    OutputRing ring = r.getOutputRingBytes() > 0 ? new OutputRing(Math.min(r.getOutputRingBytes(), MAX_RING)) : null;
    OutputTarget to = ring != null ? ring : target;
    long window = ring != null ? Long.MAX_VALUE
        : r.getInitialWindow() == 0 ? defaultWindow : Math.min(r.getInitialWindow(), MAX_WINDOW);
    // With a terminal the process's output is the master's (stdout); its stderr channel ends at once.
    OutputPump out = new OutputPump(pty != null ? pty.output() : p.getInputStream(), streamId, false, to, window, maxPayload);
    OutputPump err = new OutputPump(p.getErrorStream(), streamId, true, to, window, maxPayload);
    GuestProcess gp = new GuestProcess(id, r.getArgvList(), p, out, err, r.getStdin(), ring, exits, pty);
    processes.put(id, gp);
    return new Started(gp, out, err);
  }

  /**
   * The helper that starts a process in a new session with stdin as its controlling terminal:
   * busybox's {@code setsid -c} (the sandbox runtime's, beside its JRE, or the guest's), else
   * util-linux's.
   */
  static List<String> setsid() {
    List<java.nio.file.Path> candidates = new ArrayList<>();
    String home = System.getProperty("java.home");
    if (home != null) candidates.add(java.nio.file.Path.of(home).resolveSibling("bin").resolve("busybox"));
    candidates.add(java.nio.file.Path.of("/bin/busybox"));
    candidates.add(java.nio.file.Path.of("/usr/bin/busybox"));
    for (java.nio.file.Path c : candidates) {
      if (java.nio.file.Files.isExecutable(c)) return List.of(c.toString(), "setsid", "-c");
    }
    if (java.nio.file.Files.isExecutable(java.nio.file.Path.of("/usr/bin/setsid"))) return List.of("/usr/bin/setsid", "--ctty");
    throw new AgentError(Error.Code.UNIMPLEMENTED, "this agent cannot make terminals: no busybox or setsid to start a session with");
  }

  private static java.util.Set<Long> childPids() {
    java.util.Set<Long> pids = new java.util.HashSet<>();
    ProcessHandle.current().children().forEach(c -> pids.add(c.pid()));
    return pids;
  }

  /** A started process whose output pumps still have to be started. */
  public record Started(GuestProcess process, OutputPump stdout, OutputPump stderr) {
    public void startOutput() {
      boolean out = start(stdout, process.execId() + "-stdout");
      boolean err = start(stderr, process.execId() + "-stderr");
      if (out && err) return;
      // Without a thread to drain its output it would block on a full pipe for good: kill it (its
      // exit, SIGKILL, is what WaitProcess reports) and end the channels that have no pump.
      System.err.println("flotilla-guest-agent: no thread for the output of " + process.execId()
          + " (the sandbox is out of pids or memory): killing it");
      process.process().destroyForcibly();
      if (!out) stdout.abandon();
      if (!err) stderr.abandon();
    }

    private static boolean start(OutputPump pump, String name) {
      try {
        thread(pump, name).start();
        return true;
      } catch (OutOfMemoryError noThread) {
        return false;
      }
    }

    private static Thread thread(Runnable r, String name) {
      Thread t = new Thread(null, r, "out-" + PUMPS.incrementAndGet() + "-" + name, 64 * 1024);
      t.setDaemon(true);
      return t;
    }
  }

  public GuestProcess get(String execId) {
    if (execId.isEmpty()) throw AgentError.invalid("exec_id is empty");
    GuestProcess p = processes.get(execId);
    if (p == null) throw AgentError.notFound("no process with exec id '" + execId + "'");
    return p;
  }

  /** A WaitProcess reported the exit: forget the process after the retention time. */
  public void exitReported(GuestProcess p) {
    scheduler.schedule(() -> processes.remove(p.execId(), p), retention.toMillis(), TimeUnit.MILLISECONDS);
  }

  /** Every process still known, running or not. */
  public List<GuestProcess> all() {
    return new ArrayList<>(processes.values());
  }

  /** ListProcesses: the known processes, oldest first, at most {@code maxEntries} (0: the default; capped). */
  public ListProcessesResponse list(int maxEntries) {
    int max = maxEntries == 0 ? DEFAULT_LIST : (int) Math.min(Integer.toUnsignedLong(maxEntries), MAX_LIST);
    List<GuestProcess> all = all();
    all.sort(java.util.Comparator.comparingLong(GuestProcess::startedMillis).thenComparing(GuestProcess::execId));
    ListProcessesResponse.Builder b = ListProcessesResponse.newBuilder().setTruncated(all.size() > max);
    for (GuestProcess p : all.subList(0, Math.min(max, all.size()))) b.addProcesses(info(p));
    return b.build();
  }

  private static ProcessInfo info(GuestProcess p) {
    ProcessInfo.Builder b = ProcessInfo.newBuilder().setExecId(p.execId()).setPid(p.pid()).setStartedUnixMs(p.startedMillis());
    int budget = MAX_LISTED_ARGV_BYTES;
    for (String a : p.argv()) {
      if (a.length() > budget) {
        b.addArgv(a.substring(0, Math.max(0, budget))).setArgvTruncated(true);
        break;
      }
      b.addArgv(a);
      budget -= a.length();
    }
    ProcessExit exit = p.exit().getNow(null);
    b.setRunning(exit == null);
    if (exit != null) b.setExitCode(exit.exitCode()).setSignal(exit.signal());
    p.ring().ifPresent(r -> b.setDetached(true).setOutputEnd(r.end()));
    return b.build();
  }

  public List<GuestProcess> running() {
    List<GuestProcess> list = new ArrayList<>();
    for (GuestProcess p : processes.values()) if (p.isAlive()) list.add(p);
    return list;
  }
}

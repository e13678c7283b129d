package dev.flotilla.agent.guest;

import dev.flotilla.agent.guest.lease.Lease;
import dev.flotilla.agent.guest.lease.LeaseWatchdog;
import dev.flotilla.agent.guest.process.GuestProcess;
import dev.flotilla.agent.guest.process.ProcessSweep;
import dev.flotilla.agent.guest.process.ProcessTable;
import dev.flotilla.agent.guest.rebirth.CloneSystem;
import dev.flotilla.agent.guest.rebirth.DeferredRoot;
import dev.flotilla.agent.guest.rebirth.LinuxCloneSystem;
import dev.flotilla.agent.guest.rebirth.RebirthOrder;
import dev.flotilla.agent.guest.system.DirLister;
import dev.flotilla.agent.guest.system.DirWatcher;
import dev.flotilla.agent.guest.system.FileService;
import dev.flotilla.agent.guest.system.GuestProbe;
import dev.flotilla.agent.protocol.AgentProtocol;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.GuestDetails;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.System.Logger.Level;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntConsumer;

/**
 * The agent: state shared by every connection (identity, processes) and the transport-agnostic
 * server loop. A connection is any pair of byte streams; see {@link #serve}.
 */
public final class GuestAgent {

  private static final System.Logger LOG = System.getLogger(GuestAgent.class.getName());

  /** What happens once a Shutdown has been answered. */
  @FunctionalInterface
  public interface ExitAction {
    void exit(boolean powerOff);
  }

  private final AgentConfig config;
  private final ScheduledExecutorService scheduler = scheduler();
  /** Calls that may block (files, stats): kept off the connection's reader thread. */
  private final ExecutorService workers = newWorkers();
  private final ProcessTable processes;
  private final FileService files;
  private final DirLister lister;
  private final DirWatcher watcher;
  private final GuestProbe probe = new GuestProbe();
  private final ExitAction exitAction;
  private final AtomicInteger connections = new AtomicInteger();
  private final Lease lease = new Lease(System::nanoTime, LeaseWatchdog.FROZEN_GAP.toNanos());
  private final LeaseWatchdog watchdog;
  private final IntConsumer leaseExit;
  private final CloneSystem system;
  /**
   * Held while a handshake checks (and a rebirth changes) the identity: a rebirth is atomic for
   * handshakes on other connections, which see the identity before it or after it, never between.
   */
  private final Object identityLock = new Object();
  private volatile Identity identity;
  /** A template's tenant root, until a rebirth has mounted it; guarded by identityLock. */
  private DeferredRoot pendingRoot;
  /** Read without the lock: file calls wait for the tenant's root. */
  private volatile boolean rootPending;
  /** A template's agent that has taken a clone's identity; set under identityLock. */
  private volatile boolean reborn;

  /** An agent whose lease expiry ends the JVM with {@link AgentProtocol#EXIT_LEASE_EXPIRED}. */
  public GuestAgent(AgentConfig config, ExitAction exitAction) {
    this(config, exitAction, System::exit);
  }

  /**
   * @param exitAction what happens once a Shutdown has been answered
   * @param leaseExit ends the agent with the given exit code once its lease has run out and its
   *     processes are killed
   */
  public GuestAgent(AgentConfig config, ExitAction exitAction, IntConsumer leaseExit) {
    this(config, exitAction, leaseExit, new LinuxCloneSystem());
  }

  /** @param system what a rebirth changes in the kernel (tests pass a recording fake) */
  public GuestAgent(AgentConfig config, ExitAction exitAction, IntConsumer leaseExit, CloneSystem system) {
    this.config = config;
    this.exitAction = exitAction;
    this.leaseExit = leaseExit;
    this.system = system;
    this.identity = new Identity(config.sandboxId(), config.incarnation(), config.secret());
    this.pendingRoot = config.deferredRoot();
    this.rootPending = pendingRoot != null;
    if (config.template()) prepareRebirth();
    this.watchdog = new LeaseWatchdog(lease, () -> identity.sandboxId() + " incarnation " + identity.incarnation(),
        this::leaseExpired);
    // A template's agent runs its warm-up processes in its own root: the tenant's is not mounted yet.
    this.processes = new ProcessTable(scheduler, config.exitRetention(), AgentProtocol.DEFAULT_OUTPUT_WINDOW,
        config.maxPayload(), config.execDefaults(), pendingRoot != null ? null : config.tenantRoot(),
        identity.environment());
    this.files = new FileService(Math.min(config.fileChunk(), config.maxPayload() - 4096), config.tenantRoot());
    this.lister = new DirLister(files, config.maxPayload() - 4096);
    this.watcher = new DirWatcher(files, config.maxPayload() - 4096);
  }

  /** Serves one connection (e.g. a serial port) until it closes; returns its close cause, null for a clean end. */
  public Throwable serve(InputStream in, OutputStream out) {
    return serve(in, out, "stream");
  }

  /** Serves one connection until it closes; returns its close cause (null for a clean end). */
  public Throwable serve(InputStream in, OutputStream out, String description) {
    return serveAsync(in, out, description).join();
  }

  /** Serves one connection on its own reader thread; the future completes when it closes. */
  public CompletableFuture<Throwable> serveAsync(InputStream in, OutputStream out, String description) {
    FrameConnection conn = new FrameConnection(in, out, description + "#" + connections.incrementAndGet(),
        config.maxPayload());
    AgentSession session = new AgentSession(this, conn);
    conn.closed().thenAccept(session::onClosed);
    conn.start(session);
    return conn.closed();
  }

  AgentConfig config() {
    return config;
  }

  /** The identity served now; read it under {@link #identityLock()} to act on it. */
  Identity identity() {
    return identity;
  }

  Object identityLock() {
    return identityLock;
  }

  /**
   * Makes this agent, a clone of a template VM, the sandbox {@code order} names: reseeds the
   * kernel's RNG and the agent's own, sets the clock and the hostname, mounts the tenant's root if
   * it was deferred, and only then takes the identity. The caller holds {@link #identityLock()}
   * and has checked the handshake's credentials against the current identity.
   *
   * @param receivedNanos {@link System#nanoTime()} when the handshake arrived: the clock is set to
   *     the host's plus the time the agent took since (waiting for the lock, reseeding)
   * @throws AgentError when a step fails: the identity is unchanged (the steps before it are not
   *     undone; the node discards a VM whose rebirth failed)
   */
  void rebirth(RebirthOrder order, long receivedNanos) {
    long start = System.nanoTime();
    Identity before = identity;
    ConsoleLines.console().say(rebirthLine(before, order.sandboxId(), order.incarnation()));
    long rootNanos = 0;
    long seededNanos;
    try {
      system.reseedKernelRng(order.seed());
      // The JVM's default SecureRandom (NativePRNG on Linux) mixes a seed into the state every
      // NativePRNG instance shares (UUID.randomUUID's too), on top of the kernel's bytes, which
      // the template may already have buffered.
      new SecureRandom().setSeed(order.seed());
      seededNanos = System.nanoTime();
      system.setWallClock(order.wallClockUnixMs() + (System.nanoTime() - receivedNanos) / 1_000_000);
      system.setHostname(order.hostname());
    } catch (CloneSystem.CloneSystemException e) {
      ConsoleLines.console().say("flotilla-guest-agent: rebirth failed, still " + before + ": " + e.getMessage());
      throw new AgentError(Error.Code.INTERNAL, "rebirth failed (still " + before + "): " + e.getMessage()
          + "; discard this clone and cold-boot the sandbox");
    }
    if (pendingRoot != null) {
      dev.flotilla.agent.guest.process.ExecDefaults defaults;
      rootNanos = System.nanoTime();
      try {
        defaults = pendingRoot.mount();
      } catch (AgentError e) {
        ConsoleLines.console().say("flotilla-guest-agent: rebirth failed, still " + before + ": " + e.getMessage());
        throw AgentError.precondition("rebirth failed (still " + before + "): " + e.getMessage()
            + "; discard this clone and cold-boot the sandbox");
      }
      processes.reroot(defaults, config.tenantRoot());
      pendingRoot = null;
      rootPending = false;
      rootNanos = System.nanoTime() - rootNanos;
    }
    Identity after = new Identity(order.sandboxId(), order.incarnation(), HandshakeSecret.of(order.secret()));
    processes.identity(after.environment());
    identity = after;
    reborn = true;
    long total = System.nanoTime() - start;
    ConsoleLines.console().say(rebornLine(after, order.hostname(), total, seededNanos - start, rootNanos, start - receivedNanos));
  }

  /** The line a rebirth starts with. */
  static String rebirthLine(Identity before, String sandboxId, long incarnation) {
    return "flotilla-guest-agent: rebirth of " + before + " as sandbox " + sandboxId + " incarnation " + incarnation;
  }

  /** The line a rebirth ends with: how long it took, and its steps (nanoseconds). */
  static String rebornLine(Identity after, String hostname, long total, long reseed, long root, long waited) {
    return "flotilla-guest-agent: reborn as " + after + " (hostname " + hostname + ") in " + total / 1_000_000 + " ms ("
        + reseed / 1_000_000 + " ms reseeding the RNGs, " + (total - reseed - root) / 1_000_000 + " ms setting the clock and"
        + " hostname" + (root > 0 ? ", " + root / 1_000_000 + " ms mounting the root" : "") + "); the handshake waited "
        + waited / 1_000_000 + " ms before";
  }

  /**
   * A template's agent loads the code a rebirth runs before the template is saved, so that each
   * clone's first handshake does not: under TCG it took a clone's agent about 0.8 s.
   */
  private void prepareRebirth() {
    system.prepare();
    RebirthOrder.prepare();
    // Initialises NativePRNG's mixing state; mixing in more seed never weakens it.
    new SecureRandom().setSeed(java.nio.ByteBuffer.allocate(8).putLong(System.nanoTime()).array());
    // links the log lines' string concatenations (each call site bootstraps on its first use)
    Identity now = identity;
    if (rebirthLine(now, now.sandboxId(), now.incarnation()).isEmpty()
        || rebornLine(now, "warm-up", 3_000_000, 1_000_000, 1_000_000, 0).isEmpty()) {
      throw new IllegalStateException("empty log line");
    }
  }

  /**
   * File calls (paths in the tenant's root) are refused until a template's agent is reborn: its
   * root is an empty directory of the initramfs until then, and what was written there would
   * vanish under the mount.
   */
  void requireRoot(Object call) {
    if (rootPending) {
      throw AgentError.precondition(call + " needs the tenant's root, which this template VM mounts only when a clone's"
          + " first handshake rebirths it: nothing to read or write before that");
    }
  }

  /** The handshake's answer: the guest as it is now, the identity served, and a fresh random id. */
  GuestDetails details() {
    Identity id = identity;
    return probe.details().toBuilder()
        .setSandboxId(id.sandboxId())
        .setIncarnation(id.incarnation())
        .setRandomId(UUID.randomUUID().toString())
        .build();
  }

  ScheduledExecutorService timer() {
    return scheduler;
  }

  ProcessTable processes() {
    return processes;
  }

  FileService files() {
    return files;
  }

  DirLister lister() {
    return lister;
  }

  DirWatcher watcher() {
    return watcher;
  }

  GuestProbe probe() {
    return probe;
  }

  /**
   * The node is about to freeze or save this VM (a handshake with {@code pausing}). A template's
   * agent not reborn yet collects its heap before it answers: the template is being saved, and
   * every clone then starts with an empty young generation, instead of collecting during its first
   * handshake (a young collection took ~50 ms of it under TCG, most of it translating the
   * collector's code again in each clone). And it holds its console lines until its clone has
   * answered that handshake ({@link ConsoleLines}).
   */
  void beforePause() {
    if (!config.template() || reborn) return;
    ConsoleLines.console().hold(scheduler);
    System.gc();
  }

  /** The lease stated by an accepted handshake (0: none); see {@link Lease}. */
  boolean stateLease(long leaseMillis) {
    return stateLease(leaseMillis, false);
  }

  /**
   * The lease stated by a handshake (0: none), {@code pausing} if the node is about to freeze this
   * agent; see {@link Lease#state(long, boolean)}.
   *
   * @return false if the lease in force had already run out: the handshake must be refused
   */
  boolean stateLease(long leaseMillis, boolean pausing) {
    long before = lease.lease();
    if (!lease.state(TimeUnit.MILLISECONDS.toNanos(leaseMillis), pausing)) return false;
    if (lease.lease() != before) {
      ConsoleLines.console().say("flotilla-guest-agent: lease " + (leaseMillis == 0 ? "off"
          : leaseMillis + " ms: the sandbox ends itself if its node sends nothing for that long"));
    }
    if (pausing) ConsoleLines.console().say("flotilla-guest-agent: the node announced a pause: the lease restarts at the thaw");
    if (leaseMillis > 0) watchdog.start();
    return true;
  }

  /**
   * A frame from a handshaken node.
   *
   * @return false if the lease had already run out, whether or not the watchdog has seen it yet
   *     (a frozen host thawed with its node): nothing may be served any more
   */
  boolean renewLease() {
    return lease.renew();
  }

  /** On the watchdog's thread: the node has not renewed the lease in time. */
  private void leaseExpired(String message) {
    ConsoleLines.console().release(); // any held line before the last ones
    System.err.println(message);
    System.err.flush();
    if (!ProcessSweep.killAll(processes.all(), 100)) {
      System.err.println("flotilla-guest-agent: some processes survived SIGKILL; exiting anyway");
    }
    leaseExit.accept(AgentProtocol.EXIT_LEASE_EXPIRED);
  }

  ExecutorService workers() {
    return workers;
  }

  /** SIGTERM to every process, SIGKILL to those still alive after {@code grace}. Blocking. */
  public void stopProcesses(Duration grace) {
    List<GuestProcess> running = processes.running();
    for (GuestProcess p : running) p.process().destroy();
    if (!awaitExit(running, grace)) {
      for (GuestProcess p : running) p.process().destroyForcibly();
      awaitExit(running, Duration.ofSeconds(2));
    }
  }

  private static boolean awaitExit(List<GuestProcess> ps, Duration timeout) {
    try {
      CompletableFuture.allOf(ps.stream().map(GuestProcess::exit).toArray(CompletableFuture[]::new))
          .get(timeout.toMillis(), TimeUnit.MILLISECONDS);
      return true;
    } catch (TimeoutException e) {
      return false;
    } catch (Exception e) {
      if (e instanceof InterruptedException) Thread.currentThread().interrupt();
      return false;
    }
  }

  /** Called once the Shutdown answer is on the wire. */
  void exit(boolean powerOff) {
    Thread t = new Thread(() -> {
      LOG.log(Level.INFO, "shutting down" + (powerOff ? " (power off)" : ""));
      exitAction.exit(powerOff);
    }, "agent-exit");
    t.start();
  }

  private static ScheduledExecutorService scheduler() {
    ScheduledThreadPoolExecutor s = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "agent-scheduler");
      t.setDaemon(true);
      return t;
    });
    s.setRemoveOnCancelPolicy(true);
    return Executors.unconfigurableScheduledExecutorService(s);
  }

  private static ExecutorService newWorkers() {
    AtomicInteger n = new AtomicInteger();
    // Bounded: beyond 16 busy workers a call runs on the reader thread, which pushes back on the host.
    return new ThreadPoolExecutor(0, 16, 10, TimeUnit.SECONDS, new SynchronousQueue<>(), r -> {
      Thread t = new Thread(r, "agent-worker-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    }, new ThreadPoolExecutor.CallerRunsPolicy());
  }
}

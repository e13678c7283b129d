package dev.flotilla.agent.guest;

import dev.flotilla.agent.guest.process.ExecDefaults;
import dev.flotilla.agent.guest.process.TenantRoot;
import dev.flotilla.agent.guest.rebirth.DeferredRoot;

import dev.flotilla.agent.guest.transport.AgentListener;
import dev.flotilla.agent.guest.transport.Listeners;
import dev.flotilla.agent.protocol.AgentProtocol;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * {@code java -jar flotilla-guest-agent.jar --listen unix:/path/agent.sock --sandbox-id ID --incarnation N}
 *
 * <p>Sandbox id and incarnation may come from FLOTILLA_SANDBOX_ID / FLOTILLA_INCARNATION instead.
 * Runs until a Shutdown call (or a signal). Works as PID 1 too; under tini, tini reaps orphans.
 *
 * <p>Exit codes: 0 after a Shutdown; {@link AgentProtocol#EXIT_LEASE_EXPIRED} (75) when the node
 * stated a lease and stopped renewing it (the agent killed its processes first); 1 when it cannot
 * listen; 2 for bad arguments.
 */
public final class Main {

  private static final String USAGE = """
      usage: flotilla-guest-agent --listen unix:/path/agent.sock --sandbox-id ID --incarnation N
                                  [--max-frame BYTES] [--power-off-command "poweroff -f"]
                                  [--lease-ms MS]   (a lease from the start, before any handshake)
                                  [--exec-defaults FILE] (env.NAME=, workingDir=, user= for every exec)
                                  [--setpriv PATH]  (runs processes as another user)
                                  [--tenant-root DIR --nsenter PATH] (the tenant's root when the agent
                                    runs outside it: processes enter it, file paths are resolved in it)
                                  [--deferred-root PATH] (a template VM: the tenant root is mounted by
                                    running PATH when a handshake's rebirth makes the agent a clone's)
                                  [--template] (a template VM whose tenant root is mounted before its
                                    save: the code a clone's rebirth runs is loaded ahead)
                                  [--secret-file PATH | --secret-on-first-handshake]
        sandbox id and incarnation may also come from FLOTILLA_SANDBOX_ID and FLOTILLA_INCARNATION
        --secret-file: a file holding the node's secret for this incarnation in hexadecimal (at least
          16 bytes, i.e. 32 hex digits; surrounding white space ignored). Read at start, then deleted.
          Every handshake must carry that secret.
        --secret-on-first-handshake: for a channel only the node can reach (virtio-serial): the
          first accepted handshake that carries a secret fixes it.
        With neither, any handshake naming the sandbox and incarnation is accepted (legacy; warned).
        --deferred-root: needs --tenant-root and --nsenter. Until a rebirth, processes run in the
          agent's own root; the rebirth runs PATH (it must exit 0), then reads --exec-defaults, which
          PATH writes, and from then on processes run in the tenant root.""";

  /** Set once a Shutdown is under way: the listener is closed on purpose then. */
  private static volatile boolean stopping;

  private Main() {}

  /**
   * The sandbox runtime and the microVM's initramfs carry JNA's native part in their JRE's lib/
   * (the runtime builds put it there): JNA loads it from there and never unpacks a copy into a
   * temporary directory, which a read-only root or a full disk would refuse. Elsewhere (an agent
   * run from the jar, in tests) JNA unpacks it as usual.
   */
  static void jnaFromRuntime() {
    String home = System.getProperty("java.home");
    if (home == null || System.getProperty("jna.boot.library.path") != null) return;
    Path lib = Path.of(home, "lib");
    if (java.nio.file.Files.isRegularFile(lib.resolve("libjnidispatch.so"))) {
      System.setProperty("jna.boot.library.path", lib.toString());
      System.setProperty("jna.nosys", "true");
      System.setProperty("jna.nounpack", "true");
    }
  }

  public static void main(String[] args) {
    jnaFromRuntime();
    AgentConfig config;
    String listen;
    long initialLeaseMs;
    try {
      Map<String, String> opts = parse(args);
      listen = require(opts, "--listen", null);
      String sandboxId = require(opts, "--sandbox-id", "FLOTILLA_SANDBOX_ID");
      long incarnation = Long.parseLong(require(opts, "--incarnation", "FLOTILLA_INCARNATION"));
      int maxFrame = Integer.parseInt(opts.getOrDefault("--max-frame", Integer.toString(AgentProtocol.DEFAULT_MAX_PAYLOAD)));
      List<String> powerOff = opts.containsKey("--power-off-command")
          ? Arrays.asList(opts.get("--power-off-command").trim().split("\\s+"))
          : List.of();
      AgentConfig base = AgentConfig.of(sandboxId, incarnation);
      ExecDefaults defaults;
      String file = opts.get("--exec-defaults");
      String setpriv = opts.get("--setpriv");
      Path execDefaultsFile = file == null ? null : Path.of(file);
      Path setprivPath = setpriv == null ? null : Path.of(setpriv);
      boolean deferred = opts.containsKey("--deferred-root");
      try {
        // With a deferred root the file does not exist yet: the rebirth's script writes it.
        defaults = ExecDefaults.load(deferred ? null : execDefaultsFile, setprivPath);
      } catch (IOException e) {
        throw new IllegalArgumentException("cannot read --exec-defaults: " + e.getMessage());
      }
      TenantRoot tenantRoot = null;
      if (opts.containsKey("--tenant-root") != opts.containsKey("--nsenter")) {
        throw new IllegalArgumentException("--tenant-root and --nsenter go together");
      }
      if (opts.containsKey("--tenant-root")) {
        tenantRoot = new TenantRoot(Path.of(opts.get("--tenant-root")), Path.of(opts.get("--nsenter")));
      }
      DeferredRoot deferredRoot = null;
      if (deferred) {
        if (tenantRoot == null) {
          throw new IllegalArgumentException("--deferred-root needs --tenant-root and --nsenter: the script mounts that root");
        }
        deferredRoot = new DeferredRoot(Path.of(opts.get("--deferred-root")), execDefaultsFile, setprivPath);
      }
      config = new AgentConfig(sandboxId, incarnation, maxFrame, base.fileChunk(), base.exitRetention(), powerOff,
          secret(opts), defaults, tenantRoot, deferredRoot, opts.containsKey(TEMPLATE));
      initialLeaseMs = Long.parseLong(opts.getOrDefault("--lease-ms", "0"));
      if (initialLeaseMs < 0) throw new IllegalArgumentException("--lease-ms must be 0 (none) or more");
    } catch (IllegalArgumentException e) {
      System.err.println("flotilla-guest-agent: " + e.getMessage());
      System.err.println(USAGE);
      System.exit(2);
      return;
    } catch (IOException e) {
      System.err.println("flotilla-guest-agent: cannot read the secret file: " + e);
      System.exit(2);
      return;
    }
    if (!config.secret().required()) {
      System.err.println("flotilla-guest-agent: WARNING: no --secret-file or --secret-on-first-handshake: any process "
          + "that reaches this agent's socket and knows the sandbox id and incarnation can drive it");
    }

    AgentListener listener;
    try {
      listener = Listeners.open(listen);
    } catch (IOException | IllegalArgumentException e) {
      System.err.println("flotilla-guest-agent: cannot listen on " + listen + ": " + e);
      System.exit(1);
      return;
    }
    GuestAgent agent = new GuestAgent(config, powerOff -> exit(config, listener, powerOff), code -> {
      stopping = true;
      System.exit(code);
    });
    // A node that is frozen or dies before its first handshake must not leave this agent for good:
    // the lease it was started with counts from now; every handshake states it again.
    if (initialLeaseMs > 0) agent.stateLease(initialLeaseMs);
    // Stopped by a signal (not a Shutdown call): do not leave the sandbox's processes orphaned.
    Runtime.getRuntime().addShutdownHook(new Thread(() -> agent.stopProcesses(Duration.ofSeconds(1)), "agent-stop"));
    System.err.println("flotilla-guest-agent: listening on " + listener.address() + " for sandbox "
        + config.sandboxId() + " incarnation " + config.incarnation() + " (pid " + ProcessHandle.current().pid() + ")"
        + (config.deferredRoot() != null ? " as a template: the tenant root waits for a rebirth"
            : config.template() ? " as a template whose tenant root is mounted" : ""));
    while (true) {
      AgentListener.Connection c;
      try {
        c = listener.accept();
      } catch (IOException e) {
        if (stopping) return; // the exit thread ends the JVM
        System.err.println("flotilla-guest-agent: accept failed, stopping: " + e);
        System.exit(1);
        return;
      }
      try {
        agent.serveAsync(c.in(), c.out(), c.description());
      } catch (OutOfMemoryError | RuntimeException e) {
        // A sandbox out of pids (or memory) cannot give this connection a thread: drop it and keep
        // accepting, so the node reaches the agent again once the sandbox has room.
        System.err.println("flotilla-guest-agent: cannot serve " + c.description() + ": " + e);
        closeQuietly(c);
      }
    }
  }

  private static void closeQuietly(AgentListener.Connection c) {
    try {
      c.in().close();
    } catch (IOException ignored) {
      // already gone
    }
    try {
      c.out().close();
    } catch (IOException ignored) {
      // already gone
    }
  }

  private static void exit(AgentConfig config, AgentListener listener, boolean powerOff) {
    stopping = true;
    try {
      listener.close();
    } catch (IOException ignored) {
      // exiting anyway
    }
    if (powerOff && !config.powerOffCommand().isEmpty()) {
      try {
        new ProcessBuilder(config.powerOffCommand()).inheritIO().start().waitFor();
      } catch (IOException | InterruptedException e) {
        System.err.println("flotilla-guest-agent: power off failed: " + e);
      }
    }
    System.exit(0);
  }

  private static HandshakeSecret secret(Map<String, String> opts) throws IOException {
    boolean tofu = opts.containsKey(SECRET_ON_FIRST_HANDSHAKE);
    String file = opts.get("--secret-file");
    if (tofu && file != null) {
      throw new IllegalArgumentException("--secret-file and " + SECRET_ON_FIRST_HANDSHAKE + " exclude each other");
    }
    if (file != null) return HandshakeSecret.fromFile(java.nio.file.Path.of(file));
    return tofu ? HandshakeSecret.onFirstHandshake() : HandshakeSecret.none();
  }

  private static final String SECRET_ON_FIRST_HANDSHAKE = "--secret-on-first-handshake";
  private static final String TEMPLATE = "--template";

  private static Map<String, String> parse(String[] args) {
    Map<String, String> opts = new java.util.HashMap<>();
    List<String> known = new ArrayList<>(List.of("--listen", "--sandbox-id", "--incarnation", "--max-frame", "--power-off-command", "--lease-ms",
        "--secret-file", "--exec-defaults", "--setpriv", "--tenant-root", "--nsenter", "--deferred-root"));
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      String value;
      int eq = a.indexOf('=');
      if (a.equals(SECRET_ON_FIRST_HANDSHAKE) || a.equals(TEMPLATE)) {
        opts.put(a, "true");
        continue;
      } else if (eq > 0) {
        value = a.substring(eq + 1);
        a = a.substring(0, eq);
      } else {
        if (i + 1 >= args.length) throw new IllegalArgumentException("missing value after " + a);
        value = args[++i];
      }
      if (!known.contains(a)) throw new IllegalArgumentException("unknown option " + a);
      opts.put(a, value);
    }
    return opts;
  }

  private static String require(Map<String, String> opts, String option, String env) {
    String v = opts.get(option);
    if (v == null && env != null) v = System.getenv(env);
    if (v == null || v.isBlank()) {
      throw new IllegalArgumentException("missing " + option + (env == null ? "" : " (or " + env + ")"));
    }
    return v;
  }

}

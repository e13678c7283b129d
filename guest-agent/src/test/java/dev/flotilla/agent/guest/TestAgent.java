package dev.flotilla.agent.guest;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ClientOptions;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.awaitility.Awaitility;

/**
 * A real guest agent child process ({@code java -jar flotilla-guest-agent.jar}) on a socket in a
 * temporary directory. Closing it kills the agent and every process it started, and prints the
 * agent's log so that a failing test shows what the agent said.
 */
final class TestAgent implements AutoCloseable {

  static final Duration DEADLINE = Duration.ofSeconds(20);

  final String sandboxId;
  final long incarnation;
  final Path dir;
  final Path socket;
  final Path log;
  final Process process;
  private final List<AgentClient> clients = new ArrayList<>();

  private TestAgent(String sandboxId, long incarnation, Path dir, Process process) {
    this.sandboxId = sandboxId;
    this.incarnation = incarnation;
    this.dir = dir;
    this.socket = dir.resolve("agent.sock");
    this.log = dir.resolve("agent.log");
    this.process = process;
  }

  static TestAgent start(String sandboxId, long incarnation, String... jvmFlags) throws IOException {
    return startUnder(List.of(), sandboxId, incarnation, jvmFlags);
  }

  /** Starts the agent as the last argument of {@code prefix} (e.g. {@code unshare ... tini --}). */
  static TestAgent startUnder(List<String> prefix, String sandboxId, long incarnation, String... jvmFlags)
      throws IOException {
    return startUnder(prefix, List.of(), sandboxId, incarnation, jvmFlags);
  }

  /** Starts the agent with extra agent arguments (e.g. {@code --lease-ms 1000}). */
  static TestAgent startWithArgs(List<String> agentArgs, String sandboxId, long incarnation) throws IOException {
    return startUnder(List.of(), agentArgs, sandboxId, incarnation);
  }

  /** Starts the agent with {@code --secret-file} naming a file (hex, as the node writes it) in its directory. */
  static TestAgent startWithSecret(byte[] secret, List<String> agentArgs, String sandboxId, long incarnation) throws IOException {
    Path dir = Files.createTempDirectory("flotilla-agent-it");
    Path file = dir.resolve(SECRET_FILE);
    Files.writeString(file, java.util.HexFormat.of().formatHex(secret) + "\n");
    List<String> args = new ArrayList<>(List.of("--secret-file", file.toString()));
    args.addAll(agentArgs);
    return startIn(dir, List.of(), args, sandboxId, incarnation);
  }

  static final String SECRET_FILE = "agent.secret";

  private static TestAgent startUnder(List<String> prefix, List<String> agentArgs, String sandboxId, long incarnation,
      String... jvmFlags) throws IOException {
    return startIn(Files.createTempDirectory("flotilla-agent-it"), prefix, agentArgs, sandboxId, incarnation, jvmFlags);
  }

  private static TestAgent startIn(Path dir, List<String> prefix, List<String> agentArgs, String sandboxId, long incarnation,
      String... jvmFlags) throws IOException {
    String jar = System.getProperty("flotilla.agent.jar", "target/flotilla-guest-agent.jar");
    List<String> cmd = new ArrayList<>(prefix);
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(List.of(jvmFlags));
    cmd.addAll(List.of("-jar", jar, "--listen", "unix:" + dir.resolve("agent.sock"), "--sandbox-id", sandboxId));
    cmd.addAll(agentArgs);
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("agent.log").toFile());
    pb.environment().put("FLOTILLA_INCARNATION", Long.toString(incarnation)); // the env path of the CLI
    TestAgent a = new TestAgent(sandboxId, incarnation, dir, pb.start());
    Awaitility.await("agent socket").atMost(DEADLINE).until(() -> Files.exists(a.socket) || !a.process.isAlive());
    if (!a.process.isAlive()) throw new IllegalStateException("agent died at start: " + a.logText());
    return a;
  }

  AgentClient connect() {
    return connect(ClientOptions.defaults());
  }

  AgentClient connect(ClientOptions options) {
    return connect(new AgentAddress(socket), options);
  }

  /** A client that sends {@code secret} in its handshakes. */
  AgentClient connectWithSecret(byte[] secret) {
    return connect(new AgentAddress(socket, java.util.OptionalLong.empty(), secret), ClientOptions.defaults());
  }

  private AgentClient connect(AgentAddress address, ClientOptions options) {
    AgentClient c = AgentClients.connect(address, DEADLINE, options);
    synchronized (clients) {
      clients.add(c);
    }
    return c;
  }

  AgentClient handshaken() throws Exception {
    return handshaken(ClientOptions.defaults());
  }

  AgentClient handshaken(ClientOptions options) throws Exception {
    AgentClient c = connect(options);
    c.handshake(sandboxId, incarnation, DEADLINE).get(DEADLINE.toSeconds(), TimeUnit.SECONDS);
    return c;
  }

  long pid() {
    return process.pid();
  }

  /** VmRSS of a process in bytes, 0 when it is gone. */
  static long rss(long pid) {
    try {
      for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
        if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
      }
    } catch (IOException e) {
      return 0;
    }
    return 0;
  }

  String logText() {
    try {
      return Files.readString(log);
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }

  @Override
  public void close() throws Exception {
    synchronized (clients) {
      clients.forEach(AgentClient::close);
    }
    process.descendants().forEach(ProcessHandle::destroyForcibly);
    process.destroyForcibly();
    process.waitFor(DEADLINE.toSeconds(), TimeUnit.SECONDS);
    process.descendants().forEach(ProcessHandle::destroyForcibly);
    System.out.println("---- agent log (" + dir + ") ----\n" + logText());
    try (var files = Files.walk(dir)) {
      files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}

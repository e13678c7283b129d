package dev.flotilla.agent.protocol.client;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.flotilla.agent.protocol.v1.Request;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.OptionalLong;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class AgentAddressTest {

  private static final byte[] SECRET = HexFormat.of().parseHex("00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef");
  private static final long OTHER_UID = 12345;

  private Path dir;
  private Process listener;

  @BeforeEach
  void tempDir() throws IOException {
    dir = Files.createTempDirectory("flotilla-peer");
  }

  @AfterEach
  void cleanUp() throws Exception {
    if (listener != null) {
      listener.destroyForcibly();
      listener.waitFor(10, TimeUnit.SECONDS);
    }
    try (Stream<Path> s = Files.walk(dir)) {
      s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  @Test
  void secretIsCopiedAndNeverPrinted() {
    byte[] mine = SECRET.clone();
    AgentAddress a = new AgentAddress(Path.of("/run/x/agent.sock"), OptionalLong.of(0), mine);
    mine[0] = 42;
    assertArrayEquals(SECRET, a.secret());
    a.secret()[1] = 42;
    assertArrayEquals(SECRET, a.secret());
    String hex = HexFormat.of().formatHex(SECRET);
    assertFalse(a.toString().contains(hex), a.toString());
    assertFalse(a.describe().contains(hex), a.describe());
    assertEquals("unix:/run/x/agent.sock", a.toString());
    assertEquals(a, new AgentAddress(Path.of("/run/x/agent.sock"), OptionalLong.of(0), SECRET));
    assertFalse(a.equals(new AgentAddress(Path.of("/run/x/agent.sock"), OptionalLong.of(0), new byte[32])));
  }

  @Test
  void shortSecretsAreRefused() {
    assertThrows(IllegalArgumentException.class, () -> new AgentAddress(Path.of("/s"), OptionalLong.empty(), new byte[15]));
    assertFalse(new AgentAddress(Path.of("/s"), OptionalLong.empty(), new byte[0]).hasSecret());
  }

  @Test
  void handshakeCarriesTheSecret() {
    Request r = AgentTranslations.handshake("sbx", 3, Duration.ZERO, SECRET);
    assertArrayEquals(SECRET, r.getHandshake().getSecret().toByteArray());
    assertTrue(AgentTranslations.handshake("sbx", 3, Duration.ZERO, new byte[0]).getHandshake().getSecret().isEmpty());
  }

  @Test
  void socketOfTheExpectedUidIsAccepted() throws Exception {
    Path sock = dir.resolve("agent.sock");
    try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
      server.bind(UnixDomainSocketAddress.of(sock));
      AgentAddress a = new AgentAddress(sock, OptionalLong.of(ownUid()), SECRET);
      try (AgentClient c = AgentClients.connect(a, Duration.ofSeconds(5))) {
        assertTrue(c.isOpen());
      }
    }
  }

  @Test
  void socketPlantedByAnotherUidIsRefused() throws Exception {
    assumeTrue(ownUid() == 0 && Files.isExecutable(Path.of("/usr/bin/setpriv")), "needs root and setpriv to bind as another uid");
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxrwxrwx"));
    Path sock = dir.resolve("agent.sock");
    listener = new ProcessBuilder(List.of("/usr/bin/setpriv", "--reuid=" + OTHER_UID, "--regid=" + OTHER_UID, "--clear-groups",
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xshare:auto", "-XX:TieredStopAtLevel=1",
        "-cp", System.getProperty("java.class.path"), TestUnixListener.class.getName(), sock.toString()))
        .redirectErrorStream(true).redirectOutput(dir.resolve("listener.log").toFile()).start();
    await("listener socket").atMost(Duration.ofSeconds(20)).until(() -> Files.exists(sock) || !listener.isAlive());
    assertTrue(listener.isAlive(), () -> "listener died: " + read(dir.resolve("listener.log")));
    assertEquals(OTHER_UID, ((Number) Files.getAttribute(sock, "unix:uid")).longValue());

    AgentException e = assertThrows(AgentException.class,
        () -> AgentClients.connect(new AgentAddress(sock, OptionalLong.of(ownUid()), SECRET), Duration.ofSeconds(5)));
    assertEquals(AgentException.Code.PERMISSION_DENIED, e.code());
    assertTrue(e.getMessage().contains("agent socket " + sock + " is held by uid " + OTHER_UID + ", expected " + ownUid()),
        e.getMessage());

    // the same socket with the binder's uid expected is fine: the check compares, it does not just refuse
    try (AgentClient c = AgentClients.connect(new AgentAddress(sock, OptionalLong.of(OTHER_UID), SECRET), Duration.ofSeconds(5))) {
      assertTrue(c.isOpen());
    }
    // and without an expected uid nothing is checked (the legacy path)
    try (AgentClient c = AgentClients.connect(new AgentAddress(sock), Duration.ofSeconds(5))) {
      assertTrue(c.isOpen());
    }
  }

  private static long ownUid() throws IOException {
    return ((Number) Files.getAttribute(Path.of("/proc/self"), "unix:uid")).longValue();
  }

  private static String read(Path p) {
    try {
      return Files.readString(p);
    } catch (IOException e) {
      return "(" + e + ")";
    }
  }
}

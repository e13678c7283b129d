package dev.flotilla.vm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.vm.process.TestSandboxes;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.HexFormat;
import java.util.OptionalLong;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AgentSecretsTest {

  private static final Duration T = Duration.ofSeconds(20);

  @Test
  void theNodesCopyIsPrivateAndReadBack(@TempDir Path dir) throws Exception {
    byte[] s = AgentSecrets.create(dir);
    assertEquals(AgentSecrets.BYTES, s.length);
    Path file = dir.resolve(AgentSecrets.FILE_NAME);
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(file)));
    assertArrayEquals(s, AgentSecrets.read(dir));
    assertFalse(java.util.Arrays.equals(s, AgentSecrets.generate()));
  }

  @Test
  void anUntrustworthyCopyIsNotUsed(@TempDir Path dir) throws Exception {
    assertNull(AgentSecrets.readIfTrusted(dir), "none: a VM from before secrets");
    byte[] s = AgentSecrets.create(dir);
    Path file = dir.resolve(AgentSecrets.FILE_NAME);

    Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-r--r--"));
    assertThrows(IOException.class, () -> AgentSecrets.read(dir));
    assertNull(AgentSecrets.readIfTrusted(dir));

    Files.delete(file);
    Path elsewhere = dir.resolve("planted");
    AgentSecrets.write(Files.createDirectories(elsewhere), s);
    Files.createSymbolicLink(file, elsewhere.resolve(AgentSecrets.FILE_NAME));
    assertThrows(IOException.class, () -> AgentSecrets.read(dir), "a link is not the node's file");

    Files.delete(file);
    Files.writeString(file, "abcd\n");
    Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-------"));
    assertThrows(IOException.class, () -> AgentSecrets.read(dir), "too short");

    Files.writeString(file, HexFormat.of().formatHex(s));
    Files.setAttribute(file, "unix:uid", 12345);
    IOException e = assertThrows(IOException.class, () -> AgentSecrets.read(dir));
    assertTrue(e.getMessage().contains("owned by uid 12345"), e.getMessage());
  }

  @Test
  void theHandoffIsPrivateToTheAgentsUid(@TempDir Path dir) throws Exception {
    Path f = AgentSecrets.writeHandoff(dir, AgentSecrets.generate(), 12345);
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(f)));
    assertEquals(12345, ((Number) Files.getAttribute(f, "unix:uid")).intValue());
  }

  /** The process driver end to end: the agent gets the secret, the node keeps it to itself, adopt reads it back. */
  @Test
  void aProcessSandboxServesOnlyTheHolderOfItsSecret() throws Exception {
    try (TestSandboxes sandboxes = new TestSandboxes()) {
      Vm vm = sandboxes.start(sandboxes.spec());
      Path dir = vm.handle().stateDir();
      AgentAddress address = vm.agentAddress();
      assertTrue(address.hasSecret());
      assertEquals(OptionalLong.of(sandboxes.hypervisor.sandboxRootHostUid(vm.handle().sandboxId()).orElseThrow()),
          address.expectedPeerUid());
      String hex = HexFormat.of().formatHex(address.secret());

      AgentClient c = sandboxes.connect(vm); // handshakes with the address's secret
      assertTrue(c.isOpen());
      assertFalse(Files.exists(address.unixSocket().resolveSibling(AgentSecrets.HANDOFF_FILE_NAME)), "the agent deleted its copy");
      assertArrayEquals(address.secret(), AgentSecrets.read(dir));
      assertFalse(Files.readString(dir.resolve(VmHandle.FILE_NAME)).contains(hex), "never in the handle (it goes to the journal)");
      assertFalse(vm.handle().toString().contains(hex));
      assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir.resolve(VmHandle.FILE_NAME))));

      // anyone without the secret is refused, and so is the legacy handshake
      try (AgentClient legacy = AgentClients.connect(new AgentAddress(address.unixSocket()), T)) {
        ExecutionException e = assertThrows(ExecutionException.class,
            () -> legacy.handshake(vm.handle().sandboxId(), vm.handle().incarnation(), T).get(T.toSeconds(), TimeUnit.SECONDS));
        assertEquals(AgentException.Code.PERMISSION_DENIED, assertInstanceOf(AgentException.class, e.getCause()).code());
      }

      // a restarted node adopts from the handle on disk and reads the secret back from node-only state
      Vm adopted = sandboxes.hypervisor.adopt(VmHandle.load(dir)).orElseThrow();
      assertArrayEquals(address.secret(), adopted.agentAddress().secret());
      try (AgentClient again = AgentClients.connect(adopted.agentAddress(), T)) {
        again.handshake(vm.handle().sandboxId(), vm.handle().incarnation(), T).get(T.toSeconds(), TimeUnit.SECONDS);
      }
      // a secret file tampered with is not used: the handshake fails rather than trusting it
      Files.setPosixFilePermissions(dir.resolve(AgentSecrets.FILE_NAME), PosixFilePermissions.fromString("rw-rw-rw-"));
      Vm tampered = sandboxes.hypervisor.adopt(VmHandle.load(dir)).orElseThrow();
      assertFalse(tampered.agentAddress().hasSecret());
      vm.stop(Duration.ofSeconds(5));
    }
  }
}

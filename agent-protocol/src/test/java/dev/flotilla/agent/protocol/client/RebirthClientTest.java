package dev.flotilla.agent.protocol.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import dev.flotilla.agent.protocol.v1.GuestDetails;
import dev.flotilla.agent.protocol.v1.HandshakeRequest;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.OptionalLong;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** A client for a clone's agent: the template's credentials outside, the sandbox's identity inside. */
class RebirthClientTest {

  private static final Duration DEADLINE = Duration.ofSeconds(10);
  private static final byte[] TEMPLATE_SECRET = filled(16, (byte) 7);
  private static final byte[] CLONE_SECRET = filled(32, (byte) 9);
  private static final AgentAddress.Rebirth FROM = new AgentAddress.Rebirth("tpl-abc", 1, TEMPLATE_SECRET, "fl-sbx-1");

  private final List<AutoCloseable> toClose = new CopyOnWriteArrayList<>();
  private final List<HandshakeRequest> seen = new CopyOnWriteArrayList<>();

  @AfterEach
  void closeAll() throws Exception {
    for (AutoCloseable c : toClose) c.close();
  }

  private static byte[] filled(int n, byte b) {
    byte[] a = new byte[n];
    Arrays.fill(a, b);
    return a;
  }

  /** A client whose fake agent answers each handshake with {@code answer(request)}. */
  private AgentClient client(Function<HandshakeRequest, GuestDetails> answer) {
    MemoryPipe toClient = new MemoryPipe(1 << 20);
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    FrameConnection agent = new FrameConnection(toAgent.input(), toClient.output(), "fake-agent", 1 << 20);
    agent.start(f -> {
      if (f.type() != FrameType.REQUEST) return;
      try {
        HandshakeRequest h = Request.parseFrom(f.payload()).getHandshake();
        seen.add(h);
        agent.trySend(Frame.response(f.streamId(), Response.newBuilder().setHandshake(answer.apply(h)).build().toByteArray()));
      } catch (java.io.IOException e) {
        throw new IllegalStateException(e);
      }
    });
    toClose.add(agent);
    AgentClient c = AgentClients.over(toClient.input(), toAgent.output(), "test", ClientOptions.defaults(), CLONE_SECRET, FROM);
    toClose.add(c);
    return c;
  }

  /** What a current agent answers: the identity the rebirth asked for. */
  private static GuestDetails reborn(HandshakeRequest h) {
    return GuestDetails.newBuilder().setHostname(h.getRebirth().getHostname()).setSandboxId(h.getRebirth().getSandboxId())
        .setIncarnation(h.getRebirth().getIncarnation()).setRandomId("r-" + h.getRebirth().getSeed().hashCode()).build();
  }

  @Test
  void theHandshakeCarriesTheTemplatesCredentialsOutsideAndTheNewIdentityInside() throws Exception {
    AgentClient c = client(RebirthClientTest::reborn);
    long before = System.currentTimeMillis();
    GuestInfo info = c.handshake("sbx-1", 4, Duration.ofSeconds(10), DEADLINE).get(10, TimeUnit.SECONDS);
    long after = System.currentTimeMillis();

    HandshakeRequest h = seen.get(0);
    assertEquals("tpl-abc", h.getSandboxId());
    assertEquals(1, h.getIncarnation());
    assertArrayEquals(TEMPLATE_SECRET, h.getSecret().toByteArray());
    assertEquals(10_000, h.getLeaseMs());
    assertTrue(h.hasRebirth());
    assertEquals("sbx-1", h.getRebirth().getSandboxId());
    assertEquals(4, h.getRebirth().getIncarnation());
    assertArrayEquals(CLONE_SECRET, h.getRebirth().getSecret().toByteArray());
    assertEquals("fl-sbx-1", h.getRebirth().getHostname());
    assertTrue(h.getRebirth().getWallClockUnixMs() >= before && h.getRebirth().getWallClockUnixMs() <= after,
        "the clock is read when the handshake is sent");
    assertEquals(32, h.getRebirth().getSeed().size());

    assertEquals("sbx-1", info.sandboxId());
    assertEquals(4, info.incarnation());
    assertEquals("fl-sbx-1", info.hostname());

    // a retry names the template again, with a fresh seed
    c.handshake("sbx-1", 4, DEADLINE).get(10, TimeUnit.SECONDS);
    assertEquals("tpl-abc", seen.get(1).getSandboxId());
    assertNotEquals(h.getRebirth().getSeed(), seen.get(1).getRebirth().getSeed(), "every handshake draws its own seed");
  }

  @Test
  void anAgentThatDoesNotEchoTheIdentityFailsTheHandshake() {
    // an agent older than rebirth support ignores the field and answers as what it was
    AgentClient c = client(h -> GuestDetails.newBuilder().setHostname("fl-tpl-abc").build());
    ExecutionException e = assertThrows(ExecutionException.class,
        () -> c.handshake("sbx-1", 4, DEADLINE).get(10, TimeUnit.SECONDS));
    AgentException ae = assertInstanceOf(AgentException.class, e.getCause());
    assertEquals(AgentException.Code.FAILED_PRECONDITION, ae.code());
    assertTrue(ae.getMessage().contains("did not take the clone's identity"), ae.getMessage());
    assertTrue(ae.getMessage().contains("older than rebirth support"), ae.getMessage());

    // nor does an answer for the template's identity, or another incarnation
    AgentClient stale = client(h -> GuestDetails.newBuilder().setSandboxId("sbx-1").setIncarnation(3).build());
    ExecutionException e2 = assertThrows(ExecutionException.class,
        () -> stale.handshake("sbx-1", 4, DEADLINE).get(10, TimeUnit.SECONDS));
    assertEquals(AgentException.Code.FAILED_PRECONDITION, ((AgentException) e2.getCause()).code());
  }

  @Test
  void withoutARebirthTheHandshakeIsAsBefore() throws Exception {
    MemoryPipe toClient = new MemoryPipe(1 << 20);
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    FrameConnection agent = new FrameConnection(toAgent.input(), toClient.output(), "fake-agent", 1 << 20);
    agent.start(f -> {
      if (f.type() != FrameType.REQUEST) return;
      try {
        seen.add(Request.parseFrom(f.payload()).getHandshake());
      } catch (java.io.IOException e) {
        throw new IllegalStateException(e);
      }
      agent.trySend(Frame.response(f.streamId(), Response.newBuilder().setHandshake(GuestDetails.getDefaultInstance())
          .build().toByteArray()));
    });
    toClose.add(agent);
    AgentClient c = AgentClients.over(toClient.input(), toAgent.output(), "test", ClientOptions.defaults(), CLONE_SECRET);
    toClose.add(c);
    GuestInfo info = c.handshake("sbx-1", 4, DEADLINE).get(10, TimeUnit.SECONDS);
    assertEquals("", info.sandboxId(), "an old agent's answer is still accepted without a rebirth");
    assertEquals("sbx-1", seen.get(0).getSandboxId());
    assertArrayEquals(CLONE_SECRET, seen.get(0).getSecret().toByteArray());
    assertFalse(seen.get(0).hasRebirth());
  }

  @Test
  void theAddressKeepsTheRebirthAndNeverPrintsSecrets() {
    AgentAddress plain = new AgentAddress(Path.of("/tmp/a.sock"), OptionalLong.empty(), CLONE_SECRET);
    AgentAddress clone = plain.withRebirth(FROM);
    assertEquals(FROM, clone.rebirth().orElseThrow());
    assertTrue(plain.rebirth().isEmpty());
    assertNotEquals(plain, clone);
    assertEquals(clone, plain.withRebirth(new AgentAddress.Rebirth("tpl-abc", 1, TEMPLATE_SECRET.clone(), "fl-sbx-1")));
    assertEquals(clone.hashCode(), plain.withRebirth(new AgentAddress.Rebirth("tpl-abc", 1, TEMPLATE_SECRET.clone(), "fl-sbx-1")).hashCode());
    assertEquals(FROM, clone.withExpectedPeerUid(5).rebirth().orElseThrow(), "the other withers keep it");
    assertTrue(clone.describe().contains("clone of tpl-abc incarnation 1"), clone.describe());
    String hex = java.util.HexFormat.of().formatHex(TEMPLATE_SECRET);
    assertFalse(FROM.toString().contains(hex) || FROM.toString().contains(Arrays.toString(TEMPLATE_SECRET)), FROM.toString());
    assertFalse(clone.describe().contains(hex), clone.describe());

    byte[] mine = TEMPLATE_SECRET.clone();
    AgentAddress.Rebirth r = new AgentAddress.Rebirth("t", 1, mine, "h");
    mine[0] ^= 1;
    assertArrayEquals(TEMPLATE_SECRET, r.fromSecret(), "copied in");
    assertNotSame(r.fromSecret(), r.fromSecret());

    assertThrows(IllegalArgumentException.class, () -> new AgentAddress.Rebirth("t", 1, new byte[8], "h"));
    assertThrows(IllegalArgumentException.class, () -> new AgentAddress.Rebirth("t", 1, TEMPLATE_SECRET, "-bad"));
    assertThrows(IllegalArgumentException.class, () -> new AgentAddress.Rebirth("t", 1, TEMPLATE_SECRET, "a".repeat(64)));
    assertThrows(IllegalArgumentException.class, () -> new AgentAddress(Path.of("/tmp/a.sock")).withRebirth(FROM),
        "a rebirth needs the clone's own secret");
  }
}

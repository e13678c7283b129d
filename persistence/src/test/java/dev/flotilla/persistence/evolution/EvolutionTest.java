package dev.flotilla.persistence.evolution;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.persistence.kryo.KryoCodec;
import java.io.IOException;
import java.io.InputStream;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** Bytes written by the old shapes (committed fixtures) must replay into today's shapes. */
class EvolutionTest {
  private final KryoCodec today = EvolutionFixtures.codecFor(NewShapes.class);

  private static byte[] fixture(String name) throws IOException {
    try (InputStream in = EvolutionTest.class.getResourceAsStream("/evolution/" + name)) {
      assertNotNull(in, "fixture " + name + " is missing from src/test/resources/evolution");
      return in.readAllBytes();
    }
  }

  @Test
  void oldRecordBytesReplayIntoNewShapeWithAddedRemovedAndReorderedComponents() throws IOException {
    Object read = today.fromBinary(fixture(EvolutionFixtures.SANDBOX_CREATED_V1));
    NewShapes.SandboxCreated e = (NewShapes.SandboxCreated) read;
    assertEquals("sbx-42", e.sandboxId());
    assertEquals(new NewShapes.Spec("process", 2L, 0L), e.spec());
    assertEquals(List.of("a", "b"), e.tags());
    assertEquals(NewShapes.Phase.RUNNING, e.phase());
    assertEquals(Map.of(), e.labels(), "compact-constructor default for a missing component");
    assertEquals(Optional.empty(), e.owner());
    assertEquals(0, e.incarnation());
    assertFalse(e.pinned());
  }

  @Test
  void oldPlainClassBytesReplayIntoNewShape() throws IOException {
    NewShapes.PlainState s = (NewShapes.PlainState) today.fromBinary(fixture(EvolutionFixtures.PLAIN_STATE_V1));
    assertEquals("state-1", s.name);
    assertEquals(3, s.restarts);
    assertEquals(null, s.host);
  }

  @Test
  void newBytesAreReadableByOldShapesToo() {
    // A node still on the old release reading an event a newer node wrote (rolling upgrade).
    NewShapes.SandboxCreated fresh =
        new NewShapes.SandboxCreated(
            NewShapes.Phase.CREATING, "sbx-7", null, List.of("x"), Map.of("k", "v"), 3, true, Optional.of("t"));
    OldShapes.SandboxCreated old =
        (OldShapes.SandboxCreated) EvolutionFixtures.codecFor(OldShapes.class).fromBinary(today.toBinary(fresh));
    assertEquals("sbx-7", old.sandboxId());
    assertEquals(OldShapes.Phase.CREATING, old.phase());
    assertEquals(null, old.note());
    assertEquals(List.of("x"), old.tags());
  }

  @Test
  void writerStillProducesTheCommittedBytes() throws IOException {
    // Canary: the record format on the wire has not changed. If this fails on purpose, old
    // fixtures must still pass the tests above; add a new fixture instead of regenerating.
    KryoCodec then = EvolutionFixtures.codecFor(OldShapes.class);
    assertArrayEquals(fixture(EvolutionFixtures.SANDBOX_CREATED_V1), then.toBinary(EvolutionFixtures.oldSandboxCreated()));
  }

  @Test
  void narrowingAStoredComponentTypeIsRefusedClearly() {
    // vcpus was widened to long; an old reader refuses it clearly rather than truncating
    NewShapes.Spec wide = new NewShapes.Spec("qemu", 4, 512);
    var ex = assertThrows(RuntimeException.class, () -> EvolutionFixtures.codecFor(OldShapes.class).fromBinary(today.toBinary(wide)));
    assertTrue(ex.getMessage().contains("vcpus"), ex.getMessage());
  }
}

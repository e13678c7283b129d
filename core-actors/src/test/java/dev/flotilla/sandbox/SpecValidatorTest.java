package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.sandbox.protocol.SandboxError;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SpecValidatorTest {
  private final SpecValidator v = SpecValidator.fromConfig(ConfigFactory.load().getConfig("flotilla.sandbox"), Set.of("process", "qemu"),
      Map.of("firecracker", List.of("no /dev/kvm")));

  private static SandboxSpec spec(String driver, int disk, String image) {
    return new SandboxSpec(driver, 0, 0, Map.of(), RestartPolicy.ALWAYS, disk, image);
  }

  @Test
  void theDiskDefaultsAndIsBounded() {
    assertEquals(1024, v.normalize(spec("process", 0, "")).diskMiB());
    assertEquals(64, v.normalize(spec("process", 64, "")).diskMiB());
    SandboxError small = assertThrows(SandboxError.class, () -> v.normalize(spec("process", 8, "")));
    assertEquals(SandboxError.Kind.INVALID_ARGUMENT, small.kind());
    assertTrue(small.getMessage().contains("disk must be between 32 and 65536 MiB"), small.getMessage());
    assertThrows(SandboxError.class, () -> v.normalize(spec("process", 70_000, "")));
  }

  @Test
  void anImageRunsOnEitherDriverWithItsDisk() {
    assertEquals("busybox", v.normalize(spec("process", 0, "busybox")).image());
    SandboxSpec q = v.normalize(spec("qemu", 64, "busybox"));
    assertEquals("busybox", q.image());
    assertEquals(64, q.diskMiB());
    assertEquals(1024, v.normalize(spec("qemu", 0, "")).diskMiB());
  }

  @Test
  void aDriverThisHostCannotOfferSaysWhatIsMissing() {
    SandboxError e = assertThrows(SandboxError.class, () -> v.normalize(spec("firecracker", 0, "")));
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, e.kind());
    assertTrue(e.getMessage().contains("no /dev/kvm") && e.getMessage().contains("scripts/setup-host.sh"), e.getMessage());
    SandboxError unknown = assertThrows(SandboxError.class, () -> v.normalize(spec("xen", 0, "")));
    assertEquals(SandboxError.Kind.INVALID_ARGUMENT, unknown.kind());
  }

  @Test
  void aMainProcessAndAnImageReferenceAreBounded() {
    SandboxSpec base = spec("process", 0, "");
    assertEquals(java.util.List.of("sh", "-c", "true"), v.normalize(base.withCommand(java.util.List.of("sh", "-c", "true"))).command());
    assertThrows(SandboxError.class, () -> v.normalize(base.withCommand(java.util.List.of("", "x"))));
    assertThrows(SandboxError.class, () -> v.normalize(base.withCommand(java.util.List.of("a\0b"))));
    assertThrows(SandboxError.class, () -> v.normalize(base.withCommand(java.util.Collections.nCopies(SpecValidator.MAX_COMMAND_ARGS + 1, "x"))));
    assertThrows(SandboxError.class, () -> v.normalize(base.withCommand(java.util.List.of("x".repeat(SpecValidator.MAX_COMMAND_BYTES + 1)))));
    SandboxError longRef = assertThrows(SandboxError.class, () -> v.normalize(base.withImage("r".repeat(SpecValidator.MAX_IMAGE_REF + 1))));
    assertEquals(SandboxError.Kind.INVALID_ARGUMENT, longRef.kind());
  }

  @Test
  void networksAreCheckedByTheDriversOwnParserAndOnlyWhereEgressIsOffered() {
    SpecValidator egress = v.withEgressDrivers(java.util.Set.of("process"));
    SandboxSpec base = new SandboxSpec("process", 1, 256, java.util.Map.of(), null);
    Network ok = new Network("egress", java.util.List.of("10.0.0.0/8", "example.com"), java.util.List.of("10.1.0.0/16"));
    assertEquals(ok, egress.normalize(base.withNetwork(ok)).network());
    assertEquals(Network.OFF, egress.normalize(base).network(), "none by default");
    var bits = assertThrows(SandboxError.class, () -> egress.normalize(base.withNetwork(
        new Network("egress", java.util.List.of("10.0.0.1/8"), java.util.List.of()))));
    assertTrue(bits.getMessage().contains("did you mean 10.0.0.0/8"), bits.getMessage());
    var listsWithoutEgress = assertThrows(SandboxError.class, () -> egress.normalize(base.withNetwork(
        new Network("none", java.util.List.of("10.0.0.0/8"), java.util.List.of()))));
    assertTrue(listsWithoutEgress.getMessage().contains("need --network egress"), listsWithoutEgress.getMessage());
    var unknown = assertThrows(SandboxError.class, () -> egress.normalize(base.withNetwork(new Network("bridge", null, null))));
    assertTrue(unknown.getMessage().contains("use none (the default) or egress"), unknown.getMessage());
    var notOffered = assertThrows(SandboxError.class, () -> v.normalize(base.withNetwork(new Network("egress", null, null))));
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, notOffered.kind());
    assertTrue(notOffered.getMessage().contains("setup-host.sh"), notOffered.getMessage());
    // qemu offers egress where its node has passt; where it does not, the refusal says so
    SandboxSpec vm = new SandboxSpec("qemu", 1, 256, java.util.Map.of(), null);
    assertEquals(ok, v.withEgressDrivers(Set.of("process", "qemu")).normalize(vm.withNetwork(ok)).network());
    var qemuNotOffered = assertThrows(SandboxError.class, () -> egress.normalize(vm.withNetwork(ok)));
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, qemuNotOffered.kind());
    assertTrue(qemuNotOffered.getMessage().contains("qemu driver needs passt"), qemuNotOffered.getMessage());
  }

  @Test
  void timeoutsAreHeldToTheirBounds() {
    SandboxSpec base = new SandboxSpec("process", 1, 256, java.util.Map.of(), null);
    v.normalize(base.withLifetime(new Lifetime(java.time.Duration.ofMinutes(30), null, java.time.Duration.ofMinutes(5), null)));
    var tooShort = assertThrows(SandboxError.class, () -> v.normalize(base.withLifetime(
        new Lifetime(java.time.Duration.ofMillis(500), null, null, null))));
    assertTrue(tooShort.getMessage().contains("timeout must be between 1s and 30d (got 500ms)"), tooShort.getMessage());
    var idle = assertThrows(SandboxError.class, () -> v.normalize(base.withLifetime(
        new Lifetime(null, null, java.time.Duration.ofSeconds(1), null))));
    assertTrue(idle.getMessage().contains("idle timeout must be between 10s and 30d"), idle.getMessage());
  }
}

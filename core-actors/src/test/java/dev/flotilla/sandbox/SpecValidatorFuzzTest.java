package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.sandbox.protocol.SandboxError;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The checks every create goes through, on specs a hostile client makes: the validator either
 * returns a spec inside the cluster's bounds (and leaves it as it is when asked again) or refuses
 * with a {@link SandboxError} that is INVALID_ARGUMENT or FAILED_PRECONDITION and says why, and
 * survives the trip across the cluster as reply text. Sandbox ids derived from request ids are
 * always well formed and stable.
 */
class SpecValidatorFuzzTest {

  private static final SpecValidator V = SpecValidator.fromConfig(ConfigFactory.load().getConfig("flotilla.sandbox"),
      Set.of("process", "qemu"), Map.of("firecracker", List.of("no /dev/kvm")));

  /** Both targets in one, so that one fuzzing JVM covers them: the last byte picks. */
  @FuzzTest(maxDuration = "10s")
  void spec(FuzzedDataProvider data) {
    if (data.consumeInt(0, 3) == 0) {
      sandboxIds(data);
    } else {
      normalize(data);
    }
  }

  private static void normalize(FuzzedDataProvider data) {
    String driver = data.consumeBoolean() ? data.pickValue(new String[] {"", "process", "qemu", "firecracker"})
        : data.consumeString(12);
    int vcpus = data.consumeBoolean() ? data.consumeInt(-1, 10) : data.consumeInt();
    int memory = data.consumeBoolean() ? data.consumeInt(0, 20000) : data.consumeInt();
    int disk = data.consumeBoolean() ? data.consumeInt(0, 70000) : data.consumeInt();
    Map<String, String> labels = new HashMap<>();
    int n = data.consumeInt(0, 4);
    for (int i = 0; i < n; i++) labels.put(data.consumeString(70), data.consumeString(70));
    RestartPolicy policy = data.consumeBoolean() ? null : data.pickValue(RestartPolicy.values());
    String image = data.consumeBoolean() ? "" : data.consumeString(40);
    List<String> command = new ArrayList<>();
    int argc = data.consumeInt(0, 3);
    for (int i = 0; i < argc; i++) command.add(data.consumeString(16));

    SandboxSpec in = new SandboxSpec(driver, vcpus, memory, labels, policy, disk, image, command);
    SandboxSpec out;
    try {
      out = V.normalize(in);
    } catch (SandboxError e) {
      assertTrue(e.kind() == SandboxError.Kind.INVALID_ARGUMENT || e.kind() == SandboxError.Kind.FAILED_PRECONDITION,
          "a bad spec is the caller's to fix, not " + e.kind());
      assertNotNull(e.getMessage());
      SandboxError back = SandboxError.fromReplyText(e.toReplyText());
      assertEquals(e.kind(), back.kind());
      assertEquals(e.getMessage(), back.getMessage());
      return;
    }
    assertTrue(V.drivers().contains(out.driver()), "driver " + out.driver());
    assertTrue(out.vcpus() >= 1 && out.vcpus() <= V.maxVcpus(), "vcpus " + out.vcpus());
    assertTrue(out.memoryMiB() >= V.minMemoryMiB() && out.memoryMiB() <= V.maxMemoryMiB(), "memory " + out.memoryMiB());
    assertTrue(out.diskMiB() >= V.minDiskMiB() && out.diskMiB() <= V.maxDiskMiB(), "disk " + out.diskMiB());
    assertTrue(out.labels().size() <= V.maxLabels());
    out.labels().forEach((k, v) -> {
      assertTrue(k.length() <= 253 + 1 + 63, "label key of " + k.length() + " characters");
      assertTrue(v.length() <= 63, "label value of " + v.length() + " characters");
    });
    assertTrue(out.image().length() <= SpecValidator.MAX_IMAGE_REF, "image reference of " + out.image().length());
    assertTrue(out.command().isEmpty() || !out.command().get(0).isEmpty());
    out.command().forEach(a -> assertEquals(-1, a.indexOf('\0'), "NUL in the command"));
    assertEquals(out, V.normalize(out), "a normalized spec is left as it is");
  }

  private static void sandboxIds(FuzzedDataProvider data) {
    String tenant = data.consumeString(40);
    String requestId = data.consumeRemainingAsString();
    String id = SandboxIds.forRequest(tenant, requestId);
    assertTrue(SandboxIds.isValid(id), id);
    assertEquals(id, SandboxIds.forRequest(tenant, requestId), "the same request always names the same sandbox");
    assertFalse(SandboxIds.isValid(requestId) && !SandboxIds.SANDBOX_ID.matcher(requestId).matches());
  }
}

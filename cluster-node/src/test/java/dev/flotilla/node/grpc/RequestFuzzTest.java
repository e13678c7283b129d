package dev.flotilla.node.grpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.protobuf.InvalidProtocolBufferException;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.ReadFileRequest;
import dev.flotilla.api.v1.ReadLogsRequest;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.sandbox.Phase;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.sandbox.SandboxSpec;
import dev.flotilla.sandbox.SpecValidator;
import io.grpc.Status;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.grpc.GrpcServiceException;
import org.apache.pekko.grpc.javadsl.Metadata;
import org.apache.pekko.grpc.javadsl.MetadataBuilder;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;

/**
 * The gRPC edge on requests a hostile (authenticated) client makes, with no node behind it: the
 * protobuf to domain translation of specs and phase filters, the create-time spec checks, and the
 * argument checks of exec, readFile and readLogs in {@link SandboxServiceImpl}. A bad request is
 * refused with INVALID_ARGUMENT (or FAILED_PRECONDITION) and a message; one that passes is within
 * every documented bound. The service runs without a {@code SandboxControl}: a request that gets
 * past the checks fails on it with INTERNAL, which is how "accepted" is told apart here.
 */
class RequestFuzzTest {

  private static final SpecValidator VALIDATOR = SpecValidator.fromConfig(
      ConfigFactory.defaultReference().getConfig("flotilla.sandbox"), Set.of("process", "qemu"), Map.of());
  private static final String TOKEN = "fuzz-token";
  private static final Metadata AUTH = new MetadataBuilder().addText("authorization", "Bearer " + TOKEN).build();
  private static ActorSystem<Void> system;
  private static SandboxServiceImpl service;

  private static synchronized SandboxServiceImpl service() {
    if (service == null) {
      system = ActorSystem.create(Behaviors.empty(), "request-fuzz",
          ConfigFactory.parseString("pekko.actor.provider = local\npekko.loglevel = ERROR\npekko.stdout-loglevel = ERROR")
              .withFallback(ConfigFactory.defaultReference()));
      service = new SandboxServiceImpl(null, new TokenAuth(Map.of(TOKEN, "tenant-a")), system);
    }
    return service;
  }

  /** The four targets in one, so that one fuzzing JVM covers them: the last byte picks. */
  @FuzzTest(maxDuration = "10s")
  void request(FuzzedDataProvider data) throws Exception {
    switch (data.consumeInt(0, 3)) {
      case 0 -> createSpec(data.consumeRemainingAsBytes());
      case 1 -> listFilter(data.consumeRemainingAsBytes());
      case 2 -> exec(data);
      default -> readFileAndLogs(data);
    }
  }

  /** A CreateSandboxRequest as the client's bytes: translated, checked, and back to protobuf unchanged. */
  private static void createSpec(byte[] bytes) {
    CreateSandboxRequest req;
    try {
      req = CreateSandboxRequest.parseFrom(bytes);
    } catch (InvalidProtocolBufferException e) {
      return; // gRPC refuses it before the service sees it
    }
    SandboxSpec spec;
    try {
      spec = Translations.fromProto(req.getSpec());
    } catch (IllegalArgumentException e) {
      // An enum value this node does not know, or a negative duration: the service's unary() turns it into this.
      Status s = GrpcErrors.convert(e).getStatus();
      assertEquals(Status.Code.INVALID_ARGUMENT, s.getCode());
      assertNotNull(s.getDescription());
      return;
    }
    SandboxSpec normalized;
    try {
      normalized = VALIDATOR.normalize(spec);
    } catch (SandboxError e) {
      Status s = GrpcErrors.convert(e).getStatus();
      assertTrue(s.getCode() == Status.Code.INVALID_ARGUMENT || s.getCode() == Status.Code.FAILED_PRECONDITION, s.toString());
      assertNotNull(s.getDescription());
      return;
    }
    var proto = Translations.toProto(normalized);
    assertEquals(normalized, Translations.fromProto(proto), "a checked spec survives the trip to protobuf and back");
    assertEquals(normalized, VALIDATOR.normalize(Translations.fromProto(proto)));
  }

  private static void listFilter(byte[] bytes) {
    ListSandboxesRequest req;
    try {
      req = ListSandboxesRequest.parseFrom(bytes);
    } catch (InvalidProtocolBufferException e) {
      return;
    }
    Set<Phase> phases;
    try {
      phases = Translations.fromProto(req.getPhasesList());
    } catch (IllegalArgumentException e) {
      assertEquals(Status.Code.INVALID_ARGUMENT, GrpcErrors.convert(e).getStatus().getCode());
      return;
    }
    assertTrue(phases.size() <= req.getPhasesCount());
    phases.forEach(p -> assertEquals(p, Phase.valueOf(Translations.toProto(p).name())));
  }

  private static void exec(FuzzedDataProvider data) throws Exception {
    ExecRequest.Builder b = ExecRequest.newBuilder().setSandboxId(data.consumeString(20));
    int argc = data.consumeBoolean() ? data.consumeInt(0, 3) : data.consumeInt(0, SandboxServiceImpl.MAX_ARGV + 2);
    String arg = data.consumeString(12);
    for (int i = 0; i < argc; i++) b.addArgv(i == 0 ? arg : data.consumeBoolean() ? arg : data.consumeString(8));
    if (data.consumeBoolean()) b.addArgv("x".repeat(data.consumeInt(0, SandboxServiceImpl.MAX_ARGV_BYTES + 2)));
    int envc = data.consumeInt(0, 3);
    for (int i = 0; i < envc; i++) b.putEnv(data.consumeString(8), data.consumeString(8));
    b.setWorkingDir(data.consumeString(16)).setUser(data.consumeString(16));
    ExecRequest req = b.build();

    Status s = outcome(service().exec(req, AUTH));
    if (s.getCode() == Status.Code.INVALID_ARGUMENT) {
      assertNotNull(s.getDescription(), "a refusal says what to fix");
      return;
    }
    assertAccepted(s);
    assertTrue(req.getArgvCount() >= 1 && req.getArgvCount() <= SandboxServiceImpl.MAX_ARGV, "argv count " + req.getArgvCount());
    assertTrue(req.getArgvList().stream().mapToLong(String::length).sum() <= SandboxServiceImpl.MAX_ARGV_BYTES);
    assertTrue(req.getEnvCount() <= SandboxServiceImpl.MAX_ENV);
    req.getArgvList().forEach(a -> assertEquals(-1, a.indexOf('\0'), "NUL in argv passed on to the guest"));
    req.getEnvMap().forEach((k, v) -> {
      assertTrue(!k.isEmpty() && k.indexOf('=') < 0 && k.indexOf('\0') < 0, "env name '" + k + "' passed on");
      assertEquals(-1, v.indexOf('\0'), "NUL in an env value passed on to the guest");
    });
  }

  private static void readFileAndLogs(FuzzedDataProvider data) throws Exception {
    String path = data.consumeBoolean() ? "/" + data.consumeString(16) : data.consumeString(16);
    if (data.consumeBoolean()) path = path + "a".repeat(data.consumeInt(0, SandboxServiceImpl.MAX_PATH + 2));
    Status s = outcome(service().readFile(ReadFileRequest.newBuilder().setSandboxId(data.consumeString(20))
        .setPath(path).build(), AUTH));
    if (s.getCode() != Status.Code.INVALID_ARGUMENT) {
      assertAccepted(s);
      assertTrue(path.startsWith("/"), "relative path '" + path + "' passed on (the refusal says it must be absolute)");
      assertTrue(path.length() <= SandboxServiceImpl.MAX_PATH);
      assertEquals(-1, path.indexOf('\0'));
    }
    int tail = data.consumeBoolean() ? data.consumeInt(-3, 3) : data.consumeInt();
    Status logs = outcome(service().readLogs(ReadLogsRequest.newBuilder().setId(data.consumeString(20))
        .setTail(tail).setFollow(data.consumeBoolean()).build(), AUTH));
    if (logs.getCode() != Status.Code.INVALID_ARGUMENT) {
      assertAccepted(logs);
      assertTrue(tail >= -1, "tail " + tail + " passed on");
    }
  }

  /** Past the checks: the missing SandboxControl is what failed. */
  private static void assertAccepted(Status s) {
    assertEquals(Status.Code.INTERNAL, s.getCode(), "neither refused nor passed on: " + s);
  }

  private static Status outcome(Source<?, ?> source) throws Exception {
    try {
      source.runWith(Sink.ignore(), system).toCompletableFuture().get(10, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      Throwable c = e.getCause();
      if (c instanceof GrpcServiceException g) return g.getStatus();
      fail("the call failed with " + c + ", not a gRPC status");
    }
    fail("the call succeeded without a SandboxControl");
    return null;
  }
}

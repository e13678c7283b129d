package dev.flotilla.node;

import com.google.protobuf.ByteString;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.OutputSink;
import dev.flotilla.api.v1.ExecInteractiveRequest;
import dev.flotilla.api.v1.ExecInteractiveStart;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.cli.SandboxServiceMethods;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.process.ProcessHypervisor;
import dev.flotilla.vm.process.ProcessHypervisorConfig;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.IntConsumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Figures for scripts/bench-interactive.sh (no pass/fail; not run by the build, whose failsafe
 * includes only *IT): a keystroke to its echo on a remote terminal, p50 and p99, through the
 * node's gRPC API (ExecInteractive over grpc-java, as the CLI sends it) against the same
 * keystroke straight to a sandbox's guest agent (its framed protocol, no node), and the agent's
 * ping as the floor. The remote side is {@code stty raw -echo; exec cat} on a pseudo-terminal: the
 * byte goes through the agent into the terminal, cat reads and writes it back, as a shell's line
 * editor echoes a keystroke.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class InteractiveExecBench extends NodeScenarios {
  private static final String ECHO = "stty raw -echo; echo ready; exec cat";
  private static final int WARMUP = Integer.getInteger("bench.warmup", 300);
  private static final int N = Integer.getInteger("bench.iterations", 2000);

  /** Waits for the {@code i}-th echoed byte; what the remote side has echoed so far is counted by {@link #received}. */
  private static final class Echoes {
    private long count;
    private final StringBuilder head = new StringBuilder();

    synchronized void received(byte[] data) {
      if (head.length() < 64) head.append(new String(data, java.nio.charset.StandardCharsets.ISO_8859_1));
      count += data.length;
      notifyAll();
    }

    synchronized void awaitText(String s) throws InterruptedException {
      long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!head.toString().contains(s)) {
        if (System.nanoTime() > end) throw new AssertionError("no '" + s + "' from the remote side: " + head);
        wait(100);
      }
      count = 0;
    }

    synchronized void awaitCount(long n) throws InterruptedException {
      long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (count < n) {
        if (System.nanoTime() > end) throw new AssertionError("echo " + n + " did not come back");
        wait(10);
      }
    }
  }

  /** Round trips of one keystroke each, in microseconds: {@code send} sends keystroke i, the echo is awaited. */
  private static List<Long> roundTrips(Echoes echoes, IntConsumer send) throws InterruptedException {
    List<Long> us = new ArrayList<>(N);
    for (int i = 0; i < WARMUP + N; i++) {
      long t0 = System.nanoTime();
      send.accept(i);
      echoes.awaitCount(i + 1);
      if (i >= WARMUP) us.add((System.nanoTime() - t0) / 1000);
    }
    return us;
  }

  private static String figures(List<Long> us) {
    List<Long> s = new ArrayList<>(us);
    Collections.sort(s);
    return String.format("p50 %.2f ms, p99 %.2f ms, max %.2f ms (n=%d)", s.get(s.size() / 2) / 1000.0,
        s.get((int) Math.ceil(s.size() * 0.99) - 1) / 1000.0, s.get(s.size() - 1) / 1000.0, s.size());
  }

  @Test
  void keystrokeToEcho() throws Exception {
    Path dataDir = TestNode.shortTempDir();
    boot(new TestNode(dataDir, null));
    try {
      direct();
      throughGrpc();
    } finally {
      tearDown(node);
    }
  }

  /** Straight to a guest agent: a sandbox of the process driver started here, the agent's own client. */
  private void direct() throws Exception {
    Path state = TestNode.shortTempDir();
    ProcessHypervisor hv = new ProcessHypervisor(ProcessHypervisorConfig.of(Path.of(System.getProperty("flotilla.sandbox.runtime")),
        Path.of(System.getProperty("flotilla.default.image")), state).withCgroupParent("flotilla-test"));
    String id = "bench-tty-" + ProcessHandle.current().pid();
    Vm vm = hv.prepare(new VmSpec(id, 1, 1, 256, 0, hv.config().stateDirFor(id, 1), Map.of()));
    AgentClient c = null;
    try {
      vm.start(Duration.ofSeconds(30));
      c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(20));
      c.handshake(id, 1, Duration.ofSeconds(10)).join();
      List<Long> pings = new ArrayList<>();
      for (int i = 0; i < WARMUP + N; i++) {
        Duration rtt = c.ping(Duration.ofSeconds(10)).get(10, TimeUnit.SECONDS);
        if (i >= WARMUP) pings.add(rtt.toNanos() / 1000);
      }
      Echoes echoes = new Echoes();
      AgentClient agent = c;
      agent.exec(new ExecRequest("tty", List.of("sh", "-c", ECHO), Map.of(), "", true, "", new ExecRequest.Tty(24, 80, "")),
          new OutputSink() {
            @Override
            public void onData(Channel channel, byte[] data, Runnable release) {
              echoes.received(data);
              release.run();
            }

            @Override
            public void onEnd(Channel channel) {}

            @Override
            public void onError(Throwable error) {}
          }, Duration.ofSeconds(10)).get(10, TimeUnit.SECONDS);
      echoes.awaitText("ready");
      List<Long> keys = roundTrips(echoes, i -> agent.writeStdin("tty", new byte[] {(byte) ('a' + i % 26)}, Duration.ofSeconds(10)));
      System.out.println("BENCH interactive: agent ping, direct: " + figures(pings));
      System.out.println("BENCH interactive: keystroke to echo, direct to the agent: " + figures(keys));
      agent.signalProcess("tty", 9, Duration.ofSeconds(10)).get(10, TimeUnit.SECONDS);
    } finally {
      if (c != null) c.close();
      vm.kill();
      vm.exitFuture().orTimeout(20, TimeUnit.SECONDS).exceptionally(e -> null).join();
      vm.destroy();
      hv.releaseSandbox(id);
      dev.flotilla.images.TestTools.run(null, "rm", "-rf", state.toString());
    }
  }

  /** Through the node's gRPC API, as the CLI's exec -it sends it (grpc-java, plaintext on loopback). */
  private void throughGrpc() throws Exception {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), bearer());
    ManagedChannel channel = ManagedChannelBuilder.forAddress("127.0.0.1", node.node.grpcPort()).usePlaintext().build();
    try {
      Echoes echoes = new Echoes();
      StreamObserver<ExecInteractiveRequest> requests = ClientCalls.asyncBidiStreamingCall(
          io.grpc.ClientInterceptors.intercept(channel, MetadataUtils.newAttachHeadersInterceptor(headers))
              .newCall(SandboxServiceMethods.EXEC_INTERACTIVE, io.grpc.CallOptions.DEFAULT),
          new StreamObserver<ExecResponse>() {
            @Override
            public void onNext(ExecResponse r) {
              if (r.hasStdout()) echoes.received(r.getStdout().toByteArray());
            }

            @Override
            public void onError(Throwable t) {}

            @Override
            public void onCompleted() {}
          });
      requests.onNext(ExecInteractiveRequest.newBuilder().setStart(ExecInteractiveStart.newBuilder().setSandboxId(id)
          .addAllArgv(List.of("sh", "-c", ECHO)).setTty(true).setRows(24).setCols(80)).build());
      echoes.awaitText("ready");
      List<Long> keys = roundTrips(echoes, i -> {
        synchronized (requests) {
          requests.onNext(ExecInteractiveRequest.newBuilder().setStdin(ByteString.copyFrom(new byte[] {(byte) ('a' + i % 26)})).build());
        }
      });
      System.out.println("BENCH interactive: keystroke to echo, through gRPC ExecInteractive: " + figures(keys));
      requests.onNext(ExecInteractiveRequest.newBuilder().setSignal("KILL").build());
      requests.onCompleted();
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}

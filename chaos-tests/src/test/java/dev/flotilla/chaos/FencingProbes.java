package dev.flotilla.chaos;

import dev.flotilla.api.v1.PauseSandboxRequest;
import dev.flotilla.api.v1.ResumeSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import io.grpc.CallOptions;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Probes for the fencing scenarios: one thread per node keeps execing {@code echo
 * $FLOTILLA_INCARNATION} in each watched sandbox through that node's API (a frozen or dead node
 * only stalls its own thread) and records every call in a {@link FencingHistory}. Also the two
 * calls the main suite's client has no use for, PauseSandbox and ResumeSandbox.
 */
final class FencingProbes implements AutoCloseable {
  static final String ECHO_INCARNATION = "echo $FLOTILLA_INCARNATION";

  final FencingHistory history = new FencingHistory();
  private final TestCluster cluster;
  private final List<String> watched = new CopyOnWriteArrayList<>();
  private final ScheduledExecutorService threads;

  FencingProbes(TestCluster cluster) {
    this.cluster = cluster;
    this.threads = Executors.newScheduledThreadPool(cluster.size(), r -> {
      Thread t = new Thread(r, "fencing-probe");
      t.setDaemon(true);
      return t;
    });
    for (int i = 1; i <= cluster.size(); i++) {
      int node = i;
      threads.scheduleWithFixedDelay(() -> round(node), 0, 100, TimeUnit.MILLISECONDS);
    }
  }

  /** From now on the probes also exec in these sandboxes (through every node). */
  void watch(List<String> ids) {
    for (String id : ids) if (!watched.contains(id)) watched.add(id);
  }

  private void round(int node) {
    if (!cluster.local.node(node).isAlive()) return; // a dead node answers nothing; a frozen one is probed (and hangs)
    for (String id : watched) history.add(execOnce(cluster, node, id));
  }

  /** One exec of {@link #ECHO_INCARNATION} through node {@code node}, as a history record. */
  static FencingHistory.Exec execOnce(TestCluster cluster, int node, String id) {
    long start = System.nanoTime();
    try {
      var r = cluster.client(node).exec(id, TestCluster.PROBE, "sh", "-c", ECHO_INCARNATION);
      long end = System.nanoTime();
      String out = r.stdout().trim();
      if (r.exitCode() != 0 || !out.matches("\\d+")) {
        return new FencingHistory.Exec(id, node, start, end, -1, FencingHistory.Outcome.FAILED,
            "exit " + r.exitCode() + " stdout '" + out + "'");
      }
      return new FencingHistory.Exec(id, node, start, end, Long.parseLong(out), FencingHistory.Outcome.OK, "");
    } catch (StatusRuntimeException e) {
      Status.Code c = e.getStatus().getCode();
      boolean unknown = c == Status.Code.UNAVAILABLE || c == Status.Code.DEADLINE_EXCEEDED || c == Status.Code.UNKNOWN;
      return new FencingHistory.Exec(id, node, start, System.nanoTime(), -1,
          unknown ? FencingHistory.Outcome.UNKNOWN : FencingHistory.Outcome.FAILED, c.toString());
    } catch (RuntimeException e) {
      return new FencingHistory.Exec(id, node, start, System.nanoTime(), -1, FencingHistory.Outcome.UNKNOWN, e.toString());
    }
  }

  @Override
  public void close() {
    threads.shutdownNow();
    try {
      threads.awaitTermination(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  // ------------------------------------------------------------------------------ pause / resume

  static final MethodDescriptor<PauseSandboxRequest, Sandbox> PAUSE =
      unary("PauseSandbox", PauseSandboxRequest.getDefaultInstance());
  static final MethodDescriptor<ResumeSandboxRequest, Sandbox> RESUME =
      unary("ResumeSandbox", ResumeSandboxRequest.getDefaultInstance());

  private static <Q extends com.google.protobuf.Message> MethodDescriptor<Q, Sandbox> unary(String name, Q q) {
    return MethodDescriptor.<Q, Sandbox>newBuilder().setType(MethodDescriptor.MethodType.UNARY)
        .setFullMethodName(MethodDescriptor.generateFullMethodName(ChaosClient.SANDBOX, name))
        .setRequestMarshaller(ProtoUtils.marshaller(q))
        .setResponseMarshaller(ProtoUtils.marshaller(Sandbox.getDefaultInstance())).build();
  }

  static Sandbox pause(TestCluster cluster, int node, String id) {
    return call(cluster, node, PAUSE, PauseSandboxRequest.newBuilder().setId(id).build());
  }

  static Sandbox resume(TestCluster cluster, int node, String id) {
    return call(cluster, node, RESUME, ResumeSandboxRequest.newBuilder().setId(id).build());
  }

  private static <Q> Sandbox call(TestCluster cluster, int node, MethodDescriptor<Q, Sandbox> m, Q request) {
    String[] hp = cluster.client(node).target.split(":");
    ManagedChannel ch = NettyChannelBuilder.forAddress(hp[0], Integer.parseInt(hp[1])).usePlaintext().build();
    try {
      Metadata auth = new Metadata();
      auth.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + cluster.local.token());
      var authed = ClientInterceptors.intercept(ch, MetadataUtils.newAttachHeadersInterceptor(auth));
      return ClientCalls.blockingUnaryCall(authed, m,
          CallOptions.DEFAULT.withDeadlineAfter(TestCluster.CALL.toMillis(), TimeUnit.MILLISECONDS), request);
    } finally {
      ch.shutdownNow();
    }
  }

  static Duration since(long nanos) {
    return Duration.ofNanos(System.nanoTime() - nanos);
  }
}

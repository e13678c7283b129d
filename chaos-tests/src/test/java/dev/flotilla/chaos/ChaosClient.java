package dev.flotilla.chaos;

import com.google.protobuf.Message;
import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxResponse;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.ListSandboxesResponse;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.api.v1.SuspendSandboxRequest;
import dev.flotilla.grpc.health.v1.HealthCheckRequest;
import dev.flotilla.grpc.health.v1.HealthCheckResponse;
import io.grpc.CallOptions;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A plain grpc-java client of one node's public API, every call with a deadline. Written here
 * (not the CLI's) so the tests depend only on the API's protobuf types.
 */
final class ChaosClient implements AutoCloseable {
  static final String SANDBOX = "flotilla.v1.SandboxService";
  static final MethodDescriptor<CreateSandboxRequest, Sandbox> CREATE =
      unary(SANDBOX, "CreateSandbox", CreateSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  static final MethodDescriptor<GetSandboxRequest, Sandbox> GET =
      unary(SANDBOX, "GetSandbox", GetSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  static final MethodDescriptor<ListSandboxesRequest, ListSandboxesResponse> LIST =
      unary(SANDBOX, "ListSandboxes", ListSandboxesRequest.getDefaultInstance(), ListSandboxesResponse.getDefaultInstance());
  static final MethodDescriptor<DeleteSandboxRequest, DeleteSandboxResponse> DELETE =
      unary(SANDBOX, "DeleteSandbox", DeleteSandboxRequest.getDefaultInstance(), DeleteSandboxResponse.getDefaultInstance());
  static final MethodDescriptor<SuspendSandboxRequest, Sandbox> SUSPEND =
      unary(SANDBOX, "SuspendSandbox", SuspendSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  static final MethodDescriptor<dev.flotilla.api.v1.WarmTemplateRequest, dev.flotilla.api.v1.Template> WARM_TEMPLATE =
      unary("flotilla.v1.TemplateService", "WarmTemplate", dev.flotilla.api.v1.WarmTemplateRequest.getDefaultInstance(),
          dev.flotilla.api.v1.Template.getDefaultInstance());
  static final MethodDescriptor<ExecRequest, ExecResponse> EXEC =
      MethodDescriptor.<ExecRequest, ExecResponse>newBuilder()
          .setType(MethodDescriptor.MethodType.SERVER_STREAMING)
          .setFullMethodName(MethodDescriptor.generateFullMethodName(SANDBOX, "Exec"))
          .setRequestMarshaller(ProtoUtils.marshaller(ExecRequest.getDefaultInstance()))
          .setResponseMarshaller(ProtoUtils.marshaller(ExecResponse.getDefaultInstance()))
          .build();
  static final MethodDescriptor<HealthCheckRequest, HealthCheckResponse> HEALTH =
      unary("grpc.health.v1.Health", "Check", HealthCheckRequest.getDefaultInstance(), HealthCheckResponse.getDefaultInstance());

  private final ManagedChannel channel;
  private final io.grpc.Channel authed;
  final String target;

  ChaosClient(String hostPort, String token) {
    this.target = hostPort;
    int colon = hostPort.lastIndexOf(':');
    this.channel = NettyChannelBuilder.forAddress(hostPort.substring(0, colon), Integer.parseInt(hostPort.substring(colon + 1)))
        .usePlaintext()
        .maxInboundMessageSize(16 * 1024 * 1024)
        .build();
    Metadata auth = new Metadata();
    auth.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
    this.authed = ClientInterceptors.intercept(channel, MetadataUtils.newAttachHeadersInterceptor(auth));
  }

  private static <Q extends Message, R extends Message> MethodDescriptor<Q, R> unary(String service, String name, Q q, R r) {
    return MethodDescriptor.<Q, R>newBuilder()
        .setType(MethodDescriptor.MethodType.UNARY)
        .setFullMethodName(MethodDescriptor.generateFullMethodName(service, name))
        .setRequestMarshaller(ProtoUtils.marshaller(q))
        .setResponseMarshaller(ProtoUtils.marshaller(r))
        .build();
  }

  private CallOptions opts(Duration deadline) {
    // waitForReady off: a node that is down must fail the call at once (UNAVAILABLE), not queue it
    return CallOptions.DEFAULT.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS);
  }

  Sandbox create(SandboxSpec spec, String requestId, Duration deadline) {
    return ClientCalls.blockingUnaryCall(authed, CREATE, opts(deadline),
        CreateSandboxRequest.newBuilder().setSpec(spec).setRequestId(requestId).build());
  }

  Sandbox get(String id, Duration deadline) {
    return ClientCalls.blockingUnaryCall(authed, GET, opts(deadline), GetSandboxRequest.newBuilder().setId(id).build());
  }

  List<Sandbox> list(Duration deadline) {
    return ClientCalls.blockingUnaryCall(authed, LIST, opts(deadline),
        ListSandboxesRequest.newBuilder().setPageSize(1000).build()).getSandboxesList();
  }

  /**
   * Every sandbox matching {@code labels}, following the pages ({@code pageSize} a page); with
   * {@code allPhases} the DELETED ones the ledger still holds too.
   */
  List<Sandbox> listAll(java.util.Map<String, String> labels, boolean allPhases, int pageSize, Duration deadline) {
    List<Sandbox> out = new java.util.ArrayList<>();
    String token = "";
    do {
      ListSandboxesRequest.Builder b = ListSandboxesRequest.newBuilder().putAllLabelSelector(labels).setPageSize(pageSize)
          .setPageToken(token);
      if (allPhases) {
        for (dev.flotilla.api.v1.Phase p : dev.flotilla.api.v1.Phase.values()) {
          if (p != dev.flotilla.api.v1.Phase.PHASE_UNSPECIFIED && p != dev.flotilla.api.v1.Phase.UNRECOGNIZED) b.addPhases(p);
        }
      }
      ListSandboxesResponse r = ClientCalls.blockingUnaryCall(authed, LIST, opts(deadline), b.build());
      out.addAll(r.getSandboxesList());
      token = r.getNextPageToken();
    } while (!token.isEmpty());
    return out;
  }

  void delete(String id, Duration deadline) {
    ClientCalls.blockingUnaryCall(authed, DELETE, opts(deadline), DeleteSandboxRequest.newBuilder().setId(id).build());
  }

  /** SuspendSandbox: answered once the sandbox is SUSPENDED (its snapshot saved, its VM ended). */
  Sandbox suspend(String id, Duration deadline) {
    return ClientCalls.blockingUnaryCall(authed, SUSPEND, opts(deadline), SuspendSandboxRequest.newBuilder().setId(id).build());
  }

  /** WarmTemplate on this client's node (templates are node-local): the default image's, {@code cpus} and {@code memoryMiB}. */
  dev.flotilla.api.v1.Template warmTemplate(int cpus, int memoryMiB, Duration deadline) {
    return ClientCalls.blockingUnaryCall(authed, WARM_TEMPLATE, opts(deadline),
        dev.flotilla.api.v1.WarmTemplateRequest.newBuilder().setCpus(cpus).setMemoryMib(memoryMiB).build());
  }

  boolean serving(Duration deadline) {
    // A node killed and started again is asked now, not once the channel's reconnect backoff has run
    // out: grpc-java's grows to 2 minutes, and after a 20 s outage it held tests back ~15 s a restart.
    channel.resetConnectBackoff();
    return ClientCalls.blockingUnaryCall(channel, HEALTH, opts(deadline), HealthCheckRequest.getDefaultInstance())
        .getStatus() == HealthCheckResponse.ServingStatus.SERVING;
  }

  record ExecResult(String stdout, int exitCode) {}

  ExecResult exec(String id, Duration deadline, String... argv) {
    Iterator<ExecResponse> it = ClientCalls.blockingServerStreamingCall(authed, EXEC, opts(deadline),
        ExecRequest.newBuilder().setSandboxId(id).addAllArgv(List.of(argv)).build());
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int code = Integer.MIN_VALUE;
    while (it.hasNext()) {
      ExecResponse r = it.next();
      if (r.hasStdout()) out.writeBytes(r.getStdout().toByteArray());
      if (r.hasExit()) code = r.getExit().getSignal() != 0 ? 128 + r.getExit().getSignal() : r.getExit().getExitCode();
    }
    if (code == Integer.MIN_VALUE) throw new IllegalStateException("exec stream of " + id + " ended without an exit status");
    return new ExecResult(out.toString(StandardCharsets.UTF_8), code);
  }

  @Override
  public void close() {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}

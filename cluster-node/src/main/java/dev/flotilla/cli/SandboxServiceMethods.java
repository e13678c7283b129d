package dev.flotilla.cli;

import com.google.protobuf.Message;
import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxResponse;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.FileInfo;
import dev.flotilla.api.v1.ListDirRequest;
import dev.flotilla.api.v1.ListDirResponse;
import dev.flotilla.api.v1.MakeDirRequest;
import dev.flotilla.api.v1.RemoveRequest;
import dev.flotilla.api.v1.RemoveResponse;
import dev.flotilla.api.v1.RenameRequest;
import dev.flotilla.api.v1.RenameResponse;
import dev.flotilla.api.v1.StatRequest;
import dev.flotilla.api.v1.WatchDirRequest;
import dev.flotilla.api.v1.WatchDirResponse;
import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.ListEventsRequest;
import dev.flotilla.api.v1.ListEventsResponse;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.ListSandboxesResponse;
import dev.flotilla.api.v1.PauseSandboxRequest;
import dev.flotilla.api.v1.ReadFileRequest;
import dev.flotilla.api.v1.ReadFileResponse;
import dev.flotilla.api.v1.ReadLogsRequest;
import dev.flotilla.api.v1.ReadLogsResponse;
import dev.flotilla.api.v1.ResumeSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.StartSandboxRequest;
import dev.flotilla.api.v1.StopSandboxRequest;
import dev.flotilla.api.v1.WatchSandboxRequest;
import dev.flotilla.api.v1.WriteFileRequest;
import dev.flotilla.api.v1.WriteFileResponse;
import io.grpc.MethodDescriptor;
import io.grpc.MethodDescriptor.MethodType;
import io.grpc.protobuf.ProtoUtils;

/**
 * grpc-java method descriptors for {@code flotilla.v1.SandboxService}, built from the protobuf
 * message types. The pekko-grpc plugin generates no grpc-java stubs, and the CLI must not start an
 * ActorSystem just to make one call, so the client (and its tests' fake server) share these.
 */
public final class SandboxServiceMethods {

  public static final String SERVICE = "flotilla.v1.SandboxService";

  public static final MethodDescriptor<CreateSandboxRequest, Sandbox> CREATE_SANDBOX =
      unary("CreateSandbox", CreateSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<GetSandboxRequest, Sandbox> GET_SANDBOX =
      unary("GetSandbox", GetSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<ListSandboxesRequest, ListSandboxesResponse> LIST_SANDBOXES =
      unary("ListSandboxes", ListSandboxesRequest.getDefaultInstance(),
          ListSandboxesResponse.getDefaultInstance());
  public static final MethodDescriptor<StartSandboxRequest, Sandbox> START_SANDBOX =
      unary("StartSandbox", StartSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<StopSandboxRequest, Sandbox> STOP_SANDBOX =
      unary("StopSandbox", StopSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<PauseSandboxRequest, Sandbox> PAUSE_SANDBOX =
      unary("PauseSandbox", PauseSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<ResumeSandboxRequest, Sandbox> RESUME_SANDBOX =
      unary("ResumeSandbox", ResumeSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<dev.flotilla.api.v1.ForkSandboxRequest, Sandbox> FORK_SANDBOX =
      unary("ForkSandbox", dev.flotilla.api.v1.ForkSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<dev.flotilla.api.v1.SuspendSandboxRequest, Sandbox> SUSPEND_SANDBOX =
      unary("SuspendSandbox", dev.flotilla.api.v1.SuspendSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<DeleteSandboxRequest, DeleteSandboxResponse> DELETE_SANDBOX =
      unary("DeleteSandbox", DeleteSandboxRequest.getDefaultInstance(),
          DeleteSandboxResponse.getDefaultInstance());
  public static final MethodDescriptor<ExecRequest, ExecResponse> EXEC =
      method(MethodType.SERVER_STREAMING, "Exec", ExecRequest.getDefaultInstance(),
          ExecResponse.getDefaultInstance());
  public static final MethodDescriptor<dev.flotilla.api.v1.ExecInteractiveRequest, ExecResponse> EXEC_INTERACTIVE =
      method(MethodType.BIDI_STREAMING, "ExecInteractive", dev.flotilla.api.v1.ExecInteractiveRequest.getDefaultInstance(),
          ExecResponse.getDefaultInstance());
  public static final MethodDescriptor<WriteFileRequest, WriteFileResponse> WRITE_FILE =
      method(MethodType.CLIENT_STREAMING, "WriteFile", WriteFileRequest.getDefaultInstance(),
          WriteFileResponse.getDefaultInstance());
  public static final MethodDescriptor<ReadFileRequest, ReadFileResponse> READ_FILE =
      method(MethodType.SERVER_STREAMING, "ReadFile", ReadFileRequest.getDefaultInstance(),
          ReadFileResponse.getDefaultInstance());
  public static final MethodDescriptor<ReadLogsRequest, ReadLogsResponse> READ_LOGS =
      method(MethodType.SERVER_STREAMING, "ReadLogs", ReadLogsRequest.getDefaultInstance(),
          ReadLogsResponse.getDefaultInstance());
  public static final MethodDescriptor<dev.flotilla.api.v1.SetTimeoutRequest, Sandbox> SET_TIMEOUT =
      unary("SetTimeout", dev.flotilla.api.v1.SetTimeoutRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<dev.flotilla.api.v1.ResizeSandboxRequest, Sandbox> RESIZE_SANDBOX =
      unary("ResizeSandbox", dev.flotilla.api.v1.ResizeSandboxRequest.getDefaultInstance(), Sandbox.getDefaultInstance());
  public static final MethodDescriptor<ListEventsRequest, ListEventsResponse> LIST_EVENTS =
      unary("ListEvents", ListEventsRequest.getDefaultInstance(), ListEventsResponse.getDefaultInstance());
  public static final MethodDescriptor<WatchSandboxRequest, SandboxEvent> WATCH_SANDBOX =
      method(MethodType.SERVER_STREAMING, "WatchSandbox", WatchSandboxRequest.getDefaultInstance(),
          SandboxEvent.getDefaultInstance());
  // the sandbox's file system
  public static final MethodDescriptor<ListDirRequest, ListDirResponse> LIST_DIR =
      unary("ListDir", ListDirRequest.getDefaultInstance(), ListDirResponse.getDefaultInstance());
  public static final MethodDescriptor<StatRequest, FileInfo> STAT =
      unary("Stat", StatRequest.getDefaultInstance(), FileInfo.getDefaultInstance());
  public static final MethodDescriptor<MakeDirRequest, FileInfo> MAKE_DIR =
      unary("MakeDir", MakeDirRequest.getDefaultInstance(), FileInfo.getDefaultInstance());
  public static final MethodDescriptor<RemoveRequest, RemoveResponse> REMOVE =
      unary("Remove", RemoveRequest.getDefaultInstance(), RemoveResponse.getDefaultInstance());
  public static final MethodDescriptor<RenameRequest, RenameResponse> RENAME =
      unary("Rename", RenameRequest.getDefaultInstance(), RenameResponse.getDefaultInstance());
  public static final MethodDescriptor<WatchDirRequest, WatchDirResponse> WATCH_DIR =
      method(MethodType.SERVER_STREAMING, "WatchDir", WatchDirRequest.getDefaultInstance(),
          WatchDirResponse.getDefaultInstance());

  // background processes
  public static final MethodDescriptor<dev.flotilla.api.v1.StartProcessRequest, dev.flotilla.api.v1.ProcessInfo> START_PROCESS =
      unary("StartProcess", dev.flotilla.api.v1.StartProcessRequest.getDefaultInstance(), dev.flotilla.api.v1.ProcessInfo.getDefaultInstance());
  public static final MethodDescriptor<dev.flotilla.api.v1.ListProcessesRequest, dev.flotilla.api.v1.ListProcessesResponse> LIST_PROCESSES =
      unary("ListProcesses", dev.flotilla.api.v1.ListProcessesRequest.getDefaultInstance(),
          dev.flotilla.api.v1.ListProcessesResponse.getDefaultInstance());
  public static final MethodDescriptor<dev.flotilla.api.v1.AttachProcessRequest, dev.flotilla.api.v1.AttachProcessResponse> ATTACH_PROCESS =
      method(MethodType.SERVER_STREAMING, "AttachProcess", dev.flotilla.api.v1.AttachProcessRequest.getDefaultInstance(),
          dev.flotilla.api.v1.AttachProcessResponse.getDefaultInstance());
  public static final MethodDescriptor<dev.flotilla.api.v1.SignalProcessRequest, dev.flotilla.api.v1.SignalProcessResponse> SIGNAL_PROCESS =
      unary("SignalProcess", dev.flotilla.api.v1.SignalProcessRequest.getDefaultInstance(),
          dev.flotilla.api.v1.SignalProcessResponse.getDefaultInstance());

  // port forwarding: one call per forwarded TCP connection
  public static final MethodDescriptor<dev.flotilla.api.v1.PortForwardRequest, dev.flotilla.api.v1.PortForwardResponse> PORT_FORWARD =
      method(MethodType.BIDI_STREAMING, "PortForward", dev.flotilla.api.v1.PortForwardRequest.getDefaultInstance(),
          dev.flotilla.api.v1.PortForwardResponse.getDefaultInstance());

  private SandboxServiceMethods() {}

  private static <Req extends Message, Resp extends Message> MethodDescriptor<Req, Resp> unary(
      String name, Req request, Resp response) {
    return method(MethodType.UNARY, name, request, response);
  }

  private static <Req extends Message, Resp extends Message> MethodDescriptor<Req, Resp> method(
      MethodType type, String name, Req request, Resp response) {
    return descriptor(SERVICE, type, name, request, response);
  }

  /** A descriptor of any flotilla service's method (see also {@link ClusterServiceMethods}). */
  static <Req extends Message, Resp extends Message> MethodDescriptor<Req, Resp> descriptor(
      String service, MethodType type, String name, Req request, Resp response) {
    return MethodDescriptor.<Req, Resp>newBuilder()
        .setType(type)
        .setFullMethodName(MethodDescriptor.generateFullMethodName(service, name))
        .setRequestMarshaller(ProtoUtils.marshaller(request))
        .setResponseMarshaller(ProtoUtils.marshaller(response))
        .build();
  }
}

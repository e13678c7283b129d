package dev.flotilla.cli;

import dev.flotilla.api.v1.DrainNodeRequest;
import dev.flotilla.api.v1.DrainNodeResponse;
import dev.flotilla.api.v1.ListNodesRequest;
import dev.flotilla.api.v1.ListNodesResponse;
import io.grpc.MethodDescriptor;
import io.grpc.MethodDescriptor.MethodType;

/** grpc-java method descriptors for {@code flotilla.v1.ClusterService}. */
public final class ClusterServiceMethods {
  public static final String SERVICE = "flotilla.v1.ClusterService";

  public static final MethodDescriptor<ListNodesRequest, ListNodesResponse> LIST_NODES =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.UNARY, "ListNodes",
          ListNodesRequest.getDefaultInstance(), ListNodesResponse.getDefaultInstance());
  public static final MethodDescriptor<DrainNodeRequest, DrainNodeResponse> DRAIN_NODE =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.UNARY, "DrainNode",
          DrainNodeRequest.getDefaultInstance(), DrainNodeResponse.getDefaultInstance());

  private ClusterServiceMethods() {}
}

package dev.flotilla.cli;

import dev.flotilla.api.v1.DeleteImageRequest;
import dev.flotilla.api.v1.Image;
import dev.flotilla.api.v1.ImportImageRequest;
import dev.flotilla.api.v1.ListImagesRequest;
import dev.flotilla.api.v1.ListImagesResponse;
import dev.flotilla.api.v1.PullImageRequest;
import io.grpc.MethodDescriptor;
import io.grpc.MethodDescriptor.MethodType;

/** grpc-java method descriptors for {@code flotilla.v1.ImageService}. */
public final class ImageServiceMethods {
  public static final String SERVICE = "flotilla.v1.ImageService";

  public static final MethodDescriptor<PullImageRequest, Image> PULL_IMAGE =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.UNARY, "PullImage",
          PullImageRequest.getDefaultInstance(), Image.getDefaultInstance());
  public static final MethodDescriptor<ImportImageRequest, Image> IMPORT_IMAGE =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.CLIENT_STREAMING, "ImportImage",
          ImportImageRequest.getDefaultInstance(), Image.getDefaultInstance());
  public static final MethodDescriptor<ListImagesRequest, ListImagesResponse> LIST_IMAGES =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.UNARY, "ListImages",
          ListImagesRequest.getDefaultInstance(), ListImagesResponse.getDefaultInstance());
  public static final MethodDescriptor<DeleteImageRequest, Image> DELETE_IMAGE =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.UNARY, "DeleteImage",
          DeleteImageRequest.getDefaultInstance(), Image.getDefaultInstance());

  private ImageServiceMethods() {}
}

package dev.flotilla.cli;

import dev.flotilla.api.v1.ListTemplatesRequest;
import dev.flotilla.api.v1.ListTemplatesResponse;
import dev.flotilla.api.v1.RemoveTemplateRequest;
import dev.flotilla.api.v1.Template;
import dev.flotilla.api.v1.WarmTemplateRequest;
import io.grpc.MethodDescriptor;
import io.grpc.MethodDescriptor.MethodType;

/** grpc-java method descriptors for {@code flotilla.v1.TemplateService}. */
public final class TemplateServiceMethods {
  public static final String SERVICE = "flotilla.v1.TemplateService";

  public static final MethodDescriptor<WarmTemplateRequest, Template> WARM_TEMPLATE =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.UNARY, "WarmTemplate",
          WarmTemplateRequest.getDefaultInstance(), Template.getDefaultInstance());
  public static final MethodDescriptor<ListTemplatesRequest, ListTemplatesResponse> LIST_TEMPLATES =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.UNARY, "ListTemplates",
          ListTemplatesRequest.getDefaultInstance(), ListTemplatesResponse.getDefaultInstance());
  public static final MethodDescriptor<RemoveTemplateRequest, Template> REMOVE_TEMPLATE =
      SandboxServiceMethods.descriptor(SERVICE, MethodType.UNARY, "RemoveTemplate",
          RemoveTemplateRequest.getDefaultInstance(), Template.getDefaultInstance());

  private TemplateServiceMethods() {}
}

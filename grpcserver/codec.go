package grpcserver

import (
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// gRPC answers INTERNAL, the code for a fault of the server, when its codec
// fails to decode a request. A request that does not decode (malformed
// bytes, or a string field that is not UTF-8) is the client's fault, so the
// server decodes through requestCodec, which hands the decoding error to
// the handler, and the handlers of withDecodeErrors answer it with
// INVALID_ARGUMENT.

// requestCodec is gRPC's protobuf codec, except that it keeps the error of
// a decodeInto target instead of returning it.
type requestCodec struct{ encoding.CodecV2 }

func newRequestCodec() requestCodec {
	return requestCodec{encoding.GetCodecV2(protoenc.Name)}
}

// decodeInto is what a handler of withDecodeErrors asks the codec to
// decode: the request message, and where to keep the error.
type decodeInto struct {
	msg any
	err error
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if d, ok := v.(*decodeInto); ok {
		d.err = c.CodecV2.Unmarshal(data, d.msg)
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// withDecodeErrors returns a copy of desc whose unary handlers answer a
// request that fails to decode with INVALID_ARGUMENT. It needs the server
// to decode with requestCodec.
//
// The generated handlers decode before they call the interceptors, so a
// failure would never reach those that count calls; the answer to a
// malformed request is handed to them as if the method had given it.
func withDecodeErrors(desc grpc.ServiceDesc) *grpc.ServiceDesc {
	desc.Methods = slices.Clone(desc.Methods)
	for i := range desc.Methods {
		handler := desc.Methods[i].Handler
		method := "/" + desc.ServiceName + "/" + desc.Methods[i].MethodName
		desc.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error,
			intercept grpc.UnaryServerInterceptor) (any, error) {
			var req any
			var malformed error
			resp, err := handler(srv, ctx, func(v any) error {
				d := decodeInto{msg: v}
				if err := dec(&d); err != nil {
					return err
				}
				if d.err != nil {
					req = v
					malformed = status.Errorf(codes.InvalidArgument, "malformed request: %v", d.err)
					return malformed
				}
				return nil
			}, intercept)
			if malformed == nil || intercept == nil {
				return resp, err
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: method}
			return intercept(ctx, req, info, func(context.Context, any) (any, error) {
				return nil, malformed
			})
		}
	}
	return &desc
}

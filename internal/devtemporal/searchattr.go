package devtemporal

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// ensureSearchAttributes adds the Keyword search attributes attrs that
// namespace lacks. Attributes given at namespace creation cover a new DB; this
// covers a DB created before an attribute was added to the list.
func ensureSearchAttributes(ctx context.Context, frontendAddr, namespace string, attrs []string, logger *slog.Logger) (added bool, err error) {
	if len(attrs) == 0 {
		return false, nil
	}
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  frontendAddr,
		Namespace: namespace,
		Logger:    sdklog.NewStructuredLogger(logger),
	})
	if err != nil {
		return false, fmt.Errorf("dial temporal dev server at %s: %w", frontendAddr, err)
	}
	defer c.Close()

	list, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return false, fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	missing := make(map[string]enumspb.IndexedValueType)
	for _, name := range attrs {
		typ, ok := list.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
		case typ != enumspb.INDEXED_VALUE_TYPE_KEYWORD:
			return false, fmt.Errorf("search attribute %s of namespace %s has type %s, want Keyword; "+
				"remove it (temporal operator search-attribute remove) or start with a fresh database", name, namespace, typ)
		}
	}
	if len(missing) == 0 {
		return false, nil
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	}); err != nil {
		return false, fmt.Errorf("add search attributes to namespace %s: %w", namespace, err)
	}
	names := make([]string, 0, len(missing))
	for name := range missing {
		names = append(names, name)
	}
	slices.Sort(names)
	logger.Info("added search attributes", "namespace", namespace, "names", names)
	return true, nil
}

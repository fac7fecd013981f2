package emulator

import "strings"

// InstanceType is an ECS instance type the emulator sells.
type InstanceType struct {
	Name      string // "ecs.gn7i-c8g1.2xlarge"
	GPUSpec   string // as DescribeInstances reports it: "NVIDIA A10"
	GPUAmount int
	CPU       int
	MemoryMiB int
	// PriceUSD and SpotPriceUSD are per instance-hour. A zero spot price
	// means the type cannot be bought as spot.
	PriceUSD     float64
	SpotPriceUSD float64
}

// family is the instance type family: "ecs.gn7i" for "ecs.gn7i-c8g1.2xlarge".
func (t InstanceType) family() string {
	name := t.Name
	if i := strings.LastIndex(name, "."); i > 0 {
		name = name[:i]
	}
	if i := strings.Index(name, "-"); i > 0 {
		name = name[:i]
	}
	return name
}

// DefaultInstanceTypes are the GPU types the emulator sells unless Options
// says otherwise. Specs follow the ECS instance family tables; prices are
// deterministic test figures, not quotes.
func DefaultInstanceTypes() []InstanceType {
	return []InstanceType{
		{Name: "ecs.gn6i-c4g1.xlarge", GPUSpec: "NVIDIA T4", GPUAmount: 1, CPU: 4, MemoryMiB: 15 * 1024, PriceUSD: 0.90, SpotPriceUSD: 0.27},
		{Name: "ecs.gn7i-c8g1.2xlarge", GPUSpec: "NVIDIA A10", GPUAmount: 1, CPU: 8, MemoryMiB: 30 * 1024, PriceUSD: 1.50, SpotPriceUSD: 0.45},
		{Name: "ecs.gn7i-c16g1.4xlarge", GPUSpec: "NVIDIA A10", GPUAmount: 1, CPU: 16, MemoryMiB: 60 * 1024, PriceUSD: 1.80, SpotPriceUSD: 0.54},
		{Name: "ecs.gn6v-c8g1.2xlarge", GPUSpec: "NVIDIA V100", GPUAmount: 1, CPU: 8, MemoryMiB: 32 * 1024, PriceUSD: 2.80, SpotPriceUSD: 0.84},
		{Name: "ecs.gn6v-c8g1.8xlarge", GPUSpec: "NVIDIA V100", GPUAmount: 4, CPU: 32, MemoryMiB: 128 * 1024, PriceUSD: 11.20, SpotPriceUSD: 3.36},
		{Name: "ecs.gn7e-c16g1.4xlarge", GPUSpec: "NVIDIA A100 80GB", GPUAmount: 1, CPU: 16, MemoryMiB: 125 * 1024, PriceUSD: 3.80, SpotPriceUSD: 0},
	}
}

// Wire shapes: field names and types match the ecs-20140526/v7 models.

type apiError struct {
	RequestID string `json:"RequestId"`
	HostID    string `json:"HostId"`
	Code      string `json:"Code"`
	Message   string `json:"Message"`
	Recommend string `json:"Recommend"`
}

type runInstancesBody struct {
	RequestID      string `json:"RequestId"`
	OrderID        string `json:"OrderId,omitempty"`
	TradePrice     float32
	InstanceIDSets struct {
		InstanceIDSet []string `json:"InstanceIdSet"`
	} `json:"InstanceIdSets"`
}

type ipSet struct {
	IPAddress []string `json:"IpAddress"`
}

type lockReason struct {
	LockReason string `json:"LockReason"`
	LockMsg    string `json:"LockMsg,omitempty"`
}

type tagJSON struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

type instanceJSON struct {
	InstanceID               string  `json:"InstanceId"`
	InstanceName             string  `json:"InstanceName"`
	HostName                 string  `json:"HostName,omitempty"`
	Description              string  `json:"Description"`
	Status                   string  `json:"Status"`
	InstanceType             string  `json:"InstanceType"`
	InstanceTypeFamily       string  `json:"InstanceTypeFamily"`
	RegionID                 string  `json:"RegionId"`
	ZoneID                   string  `json:"ZoneId"`
	ImageID                  string  `json:"ImageId"`
	InstanceChargeType       string  `json:"InstanceChargeType"`
	InternetChargeType       string  `json:"InternetChargeType"`
	InternetMaxBandwidthOut  int32   `json:"InternetMaxBandwidthOut"`
	InstanceNetworkType      string  `json:"InstanceNetworkType"`
	SpotStrategy             string  `json:"SpotStrategy"`
	SpotPriceLimit           float32 `json:"SpotPriceLimit"`
	SpotInterruptionBehavior string  `json:"SpotInterruptionBehavior,omitempty"`
	SpotDuration             int32   `json:"SpotDuration"`
	GPUAmount                int32   `json:"GPUAmount"`
	GPUSpec                  string  `json:"GPUSpec"`
	CPU                      int32   `json:"Cpu"`
	Memory                   int32   `json:"Memory"`
	CreationTime             string  `json:"CreationTime"`
	StartTime                string  `json:"StartTime,omitempty"`
	ExpiredTime              string  `json:"ExpiredTime"`
	AutoReleaseTime          string  `json:"AutoReleaseTime,omitempty"`
	StoppedMode              string  `json:"StoppedMode"`
	KeyPairName              string  `json:"KeyPairName,omitempty"`
	OSType                   string  `json:"OSType"`
	PublicIPAddress          ipSet   `json:"PublicIpAddress"`
	VpcAttributes            struct {
		VpcID            string `json:"VpcId"`
		VSwitchID        string `json:"VSwitchId"`
		PrivateIPAddress ipSet  `json:"PrivateIpAddress"`
	} `json:"VpcAttributes"`
	SecurityGroupIDs struct {
		SecurityGroupID []string `json:"SecurityGroupId"`
	} `json:"SecurityGroupIds"`
	OperationLocks struct {
		LockReason []lockReason `json:"LockReason"`
	} `json:"OperationLocks"`
	Tags struct {
		Tag []tagJSON `json:"Tag"`
	} `json:"Tags"`
}

type describeInstancesBody struct {
	RequestID  string `json:"RequestId"`
	TotalCount int32
	PageNumber int32
	PageSize   int32
	NextToken  string `json:"NextToken"`
	Instances  struct {
		Instance []instanceJSON `json:"Instance"`
	} `json:"Instances"`
}

type instanceStatusJSON struct {
	InstanceID string `json:"InstanceId"`
	Status     string `json:"Status"`
}

type describeInstanceStatusBody struct {
	RequestID        string `json:"RequestId"`
	TotalCount       int32
	PageNumber       int32
	PageSize         int32
	InstanceStatuses struct {
		InstanceStatus []instanceStatusJSON `json:"InstanceStatus"`
	} `json:"InstanceStatuses"`
}

type requestIDBody struct {
	RequestID string `json:"RequestId"`
}

type supportedResource struct {
	Value          string `json:"Value"`
	Status         string `json:"Status"`
	StatusCategory string `json:"StatusCategory"`
}

type availableResource struct {
	Type               string `json:"Type"`
	SupportedResources struct {
		SupportedResource []supportedResource `json:"SupportedResource"`
	} `json:"SupportedResources"`
}

type availableZone struct {
	ZoneID             string `json:"ZoneId"`
	RegionID           string `json:"RegionId"`
	Status             string `json:"Status"`
	StatusCategory     string `json:"StatusCategory"`
	AvailableResources struct {
		AvailableResource []availableResource `json:"AvailableResource"`
	} `json:"AvailableResources"`
}

type describeAvailableResourceBody struct {
	RequestID      string `json:"RequestId"`
	AvailableZones struct {
		AvailableZone []availableZone `json:"AvailableZone"`
	} `json:"AvailableZones"`
}

type priceDetail struct {
	Resource      string `json:"Resource"`
	OriginalPrice float32
	DiscountPrice float32
	TradePrice    float32
}

type describePriceBody struct {
	RequestID string `json:"RequestId"`
	PriceInfo struct {
		Price struct {
			Currency      string `json:"Currency"`
			OriginalPrice float32
			DiscountPrice float32
			TradePrice    float32
			DetailInfos   struct {
				DetailInfo []priceDetail `json:"DetailInfo"`
			} `json:"DetailInfos"`
		} `json:"Price"`
		Rules struct {
			Rule []struct{} `json:"Rule"`
		} `json:"Rules"`
	} `json:"PriceInfo"`
}

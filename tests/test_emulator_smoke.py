from controller.sandbox.emulator import Emulator


def test_emulator_seeds_walkthrough_prerequisites(aws: Emulator) -> None:
    iam = aws.boto3_client("iam")
    profile = iam.get_instance_profile(InstanceProfileName="ecsInstanceRole")["InstanceProfile"]
    assert [role["RoleName"] for role in profile["Roles"]] == ["ecsInstanceRole"]
    assert iam.get_role(RoleName="ecsTaskExecutionRole")["Role"]["RoleName"]
    keys = aws.boto3_client("ec2").describe_key_pairs()["KeyPairs"]
    assert [key["KeyName"] for key in keys] == ["admin"]
    assert aws.host == "127.0.0.1"
